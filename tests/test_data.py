from pathlib import Path

import pytest
import torch
from torchvision import datasets

from mnist_lab.data import MNISTDataModule, ShardedBatches
from mnist_lab.datasets import DataNotFoundError
from tests.conftest import make_idx_dataset


def datamodule(root: Path, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(root=str(root), val_size=kwargs.pop("val_size", 20), **kwargs)
    dm.setup()
    return dm


def test_idx_files_parse_into_split_tensors(tiny_root: Path) -> None:
    dm = datamodule(tiny_root)
    assert dm.splits["train"][0].shape == (100, 28, 28)
    assert dm.splits["train"][0].dtype == torch.uint8
    assert dm.splits["val"][0].shape == (20, 28, 28)
    assert dm.splits["test"][0].shape == (40, 28, 28)
    # the label is the row of the bright bar, as written by make_idx_dataset
    images, labels = dm.splits["test"]
    assert torch.equal((images[:, :, 10] == 255).float().argmax(1), 2 * labels + 4)


def test_validation_split_is_seeded_disjoint_and_complete(tiny_root: Path) -> None:
    a, b = datamodule(tiny_root), datamodule(tiny_root)
    assert torch.equal(a.indices["val"], b.indices["val"])
    assert set(a.indices["val"].tolist()).isdisjoint(a.indices["train"].tolist())
    assert sorted(a.indices["val"].tolist() + a.indices["train"].tolist()) == list(range(120))
    other = datamodule(tiny_root, split_seed=1)
    assert not torch.equal(a.indices["val"], other.indices["val"])


def test_val_size_zero_validates_on_the_test_set(tiny_root: Path) -> None:
    dm = datamodule(tiny_root, val_size=0)
    assert len(dm.splits["train"][1]) == 120
    assert dm.splits["val"] is dm.splits["test"]


def test_val_size_must_leave_training_data(tiny_root: Path) -> None:
    with pytest.raises(ValueError, match=r"data.val_size=120"):
        datamodule(tiny_root, val_size=120)


@pytest.mark.parametrize(("normalize", "mean", "std"), [(True, 0.1307, 0.3081), (False, 0.0, 1.0)])
def test_normalization(tiny_root: Path, normalize: bool, mean: float, std: float) -> None:
    dm = datamodule(tiny_root, normalize=normalize)
    x, y = next(iter(dm.test_dataloader()))
    raw = dm.splits["test"][0][: len(x)].float() / 255
    torch.testing.assert_close(x[:, 0], (raw - mean) / std)
    assert torch.equal(y, dm.splits["test"][1][: len(x)])


def test_fashion_mnist_uses_its_own_statistics(tmp_path: Path) -> None:
    root = make_idx_dataset(tmp_path, folder="FashionMNIST")
    dm = datamodule(root, name="fashion_mnist")
    x, _ = next(iter(dm.test_dataloader()))
    raw = dm.splits["test"][0][: len(x)].float() / 255
    torch.testing.assert_close(x[:, 0], (raw - 0.2860) / 0.3530)
    assert dm.classes[0] == "T-shirt/top"


def test_torchvision_loader_yields_the_same_batches(tiny_root: Path) -> None:
    fast = datamodule(tiny_root)
    classic = datamodule(tiny_root, loader="torchvision")
    for split in ("val", "test"):
        loaders = (getattr(dm, f"{split}_dataloader")() for dm in (fast, classic))
        for (x1, y1), (x2, y2) in zip(*loaders, strict=True):
            torch.testing.assert_close(x1, x2)
            assert torch.equal(y1, y2)


def test_train_loader_covers_every_sample_once_per_epoch(tiny_root: Path) -> None:
    dm = datamodule(tiny_root, batch_size=16)
    loader = dm.train_dataloader()
    epochs = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        labels = torch.cat([y for _, y in loader])
        assert sorted(labels.tolist()) == sorted(dm.splits["train"][1].tolist())
        epochs.append(torch.cat(list(loader.sampler)))
    assert not torch.equal(epochs[0], epochs[1]), "each epoch must draw a new permutation"
    loader.sampler.set_epoch(0)
    assert torch.equal(torch.cat(list(loader.sampler)), epochs[0]), (
        "an epoch's order depends on seed and epoch"
    )


@pytest.mark.parametrize("n", [1000, 1001, 1037, 64])
@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_are_disjoint_complete_and_equal_in_batches(n: int, world_size: int) -> None:
    ranks = [
        ShardedBatches(n, 32, shuffle=True, seed=3, rank=r, world_size=world_size) for r in range(world_size)
    ]
    for sampler in ranks:
        sampler.set_epoch(5)
    batches = [list(sampler) for sampler in ranks]
    assert len({len(b) for b in batches}) == 1, "every rank must run the same number of steps"
    assert all(len(b) == len(s) for b, s in zip(batches, ranks, strict=True))
    seen = torch.cat([torch.cat(b) for b in batches]).tolist()
    assert len(seen) == len(set(seen)), "ranks must not share samples"
    assert n - len(seen) < world_size, "at most world_size - 1 samples may be left out"
    # W ranks of batch B see what one process of batch B*W sees
    one = ShardedBatches(n, 32 * world_size, shuffle=True, seed=3)
    one.set_epoch(5)
    for step, joint in enumerate(one):
        if step < len(batches[0]):
            assert sorted(torch.cat([b[step] for b in batches]).tolist()) == sorted(joint.tolist())


def test_drop_last_keeps_full_batches_only() -> None:
    sampler = ShardedBatches(100, 32, shuffle=True, drop_last=True)
    assert [len(b) for b in sampler] == [32, 32, 32]


def test_missing_data_without_network_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    dm = MNISTDataModule(root=str(tmp_path / "nowhere"))
    with pytest.raises(DataNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "MNIST_LAB_DATA_DIR=" in message and "data.root=" in message
