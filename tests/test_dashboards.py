from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.dashboards import METRICS
from mnist_lab.train import train
from tests.conftest import compose_config


def test_tensorboard_holds_scalars_hparams_figures_graph_and_projector(
    real_data_root: Path, tmp_path: Path
) -> None:
    cfg = compose_config(
        f"data.root={real_data_root}",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=10",
        "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=5",
        f"paths.output_dir={tmp_path}",
    )
    results = train(cfg)
    # the run's own directory holds the event files: TensorBoard names the run after it
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {
        "train/loss_step",
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "lr-Adam",
        "test/acc",
        "test/loss",
        "train/params",
        "train/seconds_per_epoch",
    }, "no `epoch`, no one-dot `hparams/*` or per-class charts"
    assert set(METRICS) <= set(tags["scalars"])
    assert [len(events.Scalars(tag)) for tag in ("train/acc", "val/acc")] == [2, 2], "one point per epoch"
    assert [len(events.Scalars(tag)) for tag in ("train/loss_step", "lr-Adam")] == [4, 4], "every 5 steps"
    assert {e.step for e in events.Scalars("val/loss")} == {e.step for e in events.Scalars("train/loss")}
    assert events.Scalars("train/params")[0].value == results["params"]
    assert set(tags["images"]) == {
        "test/confusion_matrix",
        "test/per_class_accuracy",
        "test/most_confident_mistakes",
    }
    for tag in tags["images"]:
        (image,) = events.Images(tag)
        assert image.step == results["steps"] == 20, "figures at the run's last optimizer step"
        assert image.width <= 1400, f"{tag} is {image.width} px wide: must fit a 1600-px window"
    assert "custom_scalars__config__" in tags["tensors"]
    assert tags["graph"], "the network's graph"
    hparams = events.PluginTagToContent("hparams")
    assert {"_hparams_/session_start_info", "_hparams_/session_end_info"} == set(hparams)
    config = (tmp_path / "projector_config.pbtxt").read_text()
    assert 'tensor_name: "test/penultimate_features:00020"' in config
    (embedding,) = tmp_path.glob("00020/test%2fpenultimate_features")
    assert len((embedding / "metadata.tsv").read_text().splitlines()) == 2000
    assert (embedding / "sprite.png").stat().st_size > 10_000
