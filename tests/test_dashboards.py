from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.train import train
from tests.conftest import compose_config


def test_tensorboard_holds_scalars_hparams_figures_and_projector(
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
    train(cfg)
    logs = tmp_path / "tensorboard"
    events = EventAccumulator(str(logs), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    for scalar in (
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/acc_best",
        "train/loss_step",
        "lr-Adam",
        "test/acc",
        "test/loss",
    ):
        assert scalar in tags["scalars"], scalar
    assert [len(events.Scalars(tag)) for tag in ("train/acc", "val/acc")] == [2, 2], "one point per epoch"
    assert [len(events.Scalars(tag)) for tag in ("train/loss_step", "lr-Adam")] == [4, 4], "every 5 steps"
    assert sum(tag.startswith("test/acc_per_class/") for tag in tags["scalars"]) == 10
    assert {"hparams/val_acc_best", "hparams/test_acc"} <= set(tags["scalars"])
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
    assert {"test/confusion_matrix", "test/most_confident_mistakes"} <= set(tags["images"])
    assert (logs / "projector_config.pbtxt").exists()
    (embedding,) = logs.glob("*/test%2ffeatures")
    assert len((embedding / "metadata.tsv").read_text().splitlines()) == 2000
    assert (embedding / "sprite.png").stat().st_size > 10_000
