"""TensorBoard as a researcher opens it: a real server on a two-run sweep, read through its HTTP data API
(the same requests its Time Series, Custom Scalars, HParams, Images and Graphs views make)."""

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mnist_lab.dashboards import METRICS
from mnist_lab.tensorboard_server import serve_tensorboard
from tests.conftest import run_cli

TINY = [
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=10",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=5",
]
CURATED = {
    "dataset": "DATA_TYPE_STRING",
    "model": "DATA_TYPE_STRING",
    "model/widths": "DATA_TYPE_STRING",
    "model/dropout": "DATA_TYPE_STRING",
    "optimizer": "DATA_TYPE_STRING",
    "optimizer/lr": "DATA_TYPE_FLOAT64",
    "scheduler": "DATA_TYPE_STRING",
    "batch_size": "DATA_TYPE_FLOAT64",
    "max_epochs": "DATA_TYPE_FLOAT64",
    "precision": "DATA_TYPE_STRING",
    "augment": "DATA_TYPE_STRING",
    "seed": "DATA_TYPE_FLOAT64",
}


def api(url: str, path: str, body: dict[str, Any] | None = None, **query: str) -> Any:
    if query:
        path += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def test_tensorboard_shows_a_sweep_at_a_glance(tmp_path: Path, real_data_root: Path) -> None:
    done = run_cli(tmp_path, real_data_root, "-m", "model=mlp,convnet", *TINY)
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (tmp_path / "out" / "multiruns").iterdir()
    runs = {d.name: d for d in sweep.iterdir() if d.is_dir()}
    assert sorted(name.split(",")[0] for name in runs) == ["model=convnet", "model=mlp"]
    assert {json.loads((d / "results.json").read_text())["steps"] for d in runs.values()} == {20}

    with serve_tensorboard(sweep) as url:
        # runs are named by their directories (the sweep's overrides), with no level below them
        assert sorted(api(url, "/data/runs")) == sorted(runs)

        experiment = api(url, "/data/plugin/hparams/experiment", {"experimentName": ""})
        columns = {h["name"]: h for h in experiment["hparamInfos"]}
        assert {name: columns[name]["type"] for name in CURATED} == CURATED, "one type per setting"
        assert not [name for name in columns if "_target_" in name or "dir" in name or "path" in name]
        assert len(columns) <= 20, sorted(columns)
        differ = {name for name, h in columns.items() if h.get("differs")}
        assert {"model", "model/widths", "model/dropout", "optimizer/lr", "batch_size"} <= differ
        assert {"dataset", "seed", "max_epochs"}.isdisjoint(differ)
        assert set(METRICS) <= {m["name"]["tag"] for m in experiment["metricInfos"]}

        groups = api(
            url,
            "/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN"],
                "colParams": [{"metric": {"tag": tag}} for tag in METRICS],
                "startIndex": 0,
                "sliceSize": 10,
                "includeMetrics": True,
            },
        )["sessionGroups"]
        assert len(groups) == 2
        for group in groups:
            (session,) = group["sessions"]
            metrics = {m["name"]["tag"]: m for m in session["metricValues"]}
            assert set(METRICS) <= set(metrics), f"{session['name']}: every metric has a value"
            assert 0 < metrics["test/acc"]["value"] <= 1
            assert metrics["test/acc"]["trainingStep"] == 20

        # scalars: one x-axis of optimizer steps; per step, per epoch, and no `epoch` counter
        scalar_tags = api(url, "/data/plugin/scalars/tags")
        for run, tags in scalar_tags.items():
            assert "epoch" not in tags and not any(tag.startswith("hparams/") for tag in tags), run

            def series(tag: str, run: str = run) -> list[int]:
                return [step for _, step, _ in api(url, "/data/plugin/scalars/scalars", run=run, tag=tag)]

            assert series("train/loss_step") == series("lr-Adam") == [4, 9, 14, 19]
            assert series("train/loss") == series("val/loss") == series("val/acc") == [9, 19]
            assert series("test/acc") == series("train/seconds_per_epoch") == [20]
        layout = api(url, "/data/plugin/custom_scalars/layout")
        (curves,) = layout["category"]
        assert any(
            chart["multiline"]["tag"] == ["train/loss_step$", "train/loss$", "val/loss$"]
            for chart in curves["chart"]
        ), "train and val loss on one chart"

        # figures at the run's last optimizer step, one per view
        image_tags = api(url, "/data/plugin/images/tags")
        for run in runs:
            assert set(image_tags[run]) == {
                "test/confusion_matrix",
                "test/per_class_accuracy",
                "test/most_confident_mistakes",
            }
            for tag in image_tags[run]:
                (image,) = api(url, "/data/plugin/images/images", run=run, tag=tag)
                assert image["step"] == 20
                png = urllib.request.urlopen(f"{url}/data/plugin/images/individualImage?{image['query']}")
                assert png.read(8) == b"\x89PNG\r\n\x1a\n"
        graphs = api(url, "/data/plugin/graphs/info")
        assert all(graphs[run]["run_graph"] for run in runs), "the network's graph"
