"""MNIST and Fashion-MNIST as one LightningDataModule, and the loaders that feed it to the model.

Every split is one uint8 tensor (mnist_lab.datasets reads it). The default loader keeps those tensors
on the training device and gathers batches by index, so an epoch costs a permutation and a few tensor
ops per batch instead of a PIL round trip per sample.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from mnist_lab.augment import Augment
from mnist_lab.datasets import DATASETS, download, load_split
from mnist_lab.errors import ConfigError


class ShardedBatches:
    """Index batches of one epoch for one rank, like DistributedSampler + BatchSampler over a tensor.

    Each epoch draws one permutation from (seed, epoch). Global step s covers the permuted samples
    [s*B*W, (s+1)*B*W) and rank r takes the r-th of the W equal parts, so every rank has the same number
    of batches, the ranks' samples are disjoint, and W ranks of batch B see exactly what one process of
    batch B*W would. A short last step is split as evenly as possible (`drop_last=False`, default) or
    dropped; when fewer samples than ranks remain they are dropped.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
    ) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.device = torch.device(device)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning's loops at the start of every epoch (as for DistributedSampler)."""
        self.epoch = epoch

    def __len__(self) -> int:
        step = self.batch_size * self.world_size
        full, rest = divmod(self.num_samples, step)
        return full + (not self.drop_last and rest >= self.world_size)

    def __iter__(self) -> Iterator[Tensor]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator)
        else:
            order = torch.arange(self.num_samples)
        order = order.to(self.device, non_blocking=True)
        step = self.batch_size * self.world_size
        for s in range(len(self)):
            shards = order[s * step : (s + 1) * step].tensor_split(self.world_size)
            yield shards[self.rank]


class DeviceLoader:
    """Batches gathered from uint8 tensors that already live on the training device.

    Converts and normalizes on the device; no worker processes, no per-sample Python. Lightning inspects
    `sampler` and `batch_sampler` as on a DataLoader: it calls `sampler.set_epoch` every epoch and finds
    no batch sampler to replace.
    """

    batch_sampler = None

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        sampler: ShardedBatches,
        mean: float,
        std: float,
    ) -> None:
        self.images = images.to(sampler.device)
        self.labels = labels.to(sampler.device)
        self.sampler = sampler
        self.scale = 1 / (255 * std)
        self.shift = mean / std

    def __len__(self) -> int:
        return len(self.sampler)

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        x = self.images[index].unsqueeze(1).float().mul_(self.scale).sub_(self.shift)
        return x, self.labels[index]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return map(self.batch, self.sampler)


class MNISTDataModule(L.LightningDataModule):
    """MNIST or Fashion-MNIST: 60k train (minus a seeded validation split) and the official 10k test set."""

    def __init__(
        self,
        name: str = "mnist",
        root: str = "data",
        batch_size: int = 32,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 0,
        normalize: bool = True,
        loader: str = "device",
        augment: Augment | None = None,
        drop_last: bool = False,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if name not in DATASETS:
            raise ConfigError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}")
        if loader not in ("device", "torchvision"):
            raise ConfigError(f"data.loader={loader!r}: choose 'device' or 'torchvision'")
        self.save_hyperparameters(ignore="augment")
        self.augment = augment
        info = DATASETS[name]
        self.classes = info.classes
        self.mean, self.std = info.normalization(normalize)
        self.splits: dict[str, tuple[Tensor, Tensor]] = {}
        self.indices: dict[str, Tensor] = {}  # rows of the official train set used for train and val

    def prepare_data(self) -> None:
        download(self.hparams.name, self.hparams.root)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        name, root, val_size = self.hparams.name, self.hparams.root, self.hparams.val_size
        train_x, train_y = load_split(name, root, train=True)
        test_x, test_y = load_split(name, root, train=False)
        if not 0 <= val_size < len(train_x):
            raise ConfigError(
                f"data.val_size={val_size} must be in [0, {len(train_x)}): training needs images"
            )
        generator = torch.Generator().manual_seed(self.hparams.split_seed)
        order = torch.randperm(len(train_x), generator=generator)
        self.indices = {"train": order[val_size:].sort().values}
        if val_size:
            self.indices["val"] = order[:val_size].sort().values
        for split, index in self.indices.items():
            self.splits[split] = (train_x[index], train_y[index])
        self.splits["test"] = (test_x, test_y)
        if not val_size:  # validate on the test set, as the Keras examples do
            self.splits["val"] = self.splits["test"]

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DeviceLoader | DataLoader:
        if self.hparams.loader == "torchvision":
            return self._torchvision_loader(split, batch_size, shuffle)
        trainer = self.trainer
        images, labels = self.splits[split]
        # Lightning turns shuffling off for `overfit_batches` only on a DataLoader's RandomSampler
        overfit = bool(trainer and trainer.overfit_batches)
        sampler = ShardedBatches(
            len(labels),
            batch_size,
            shuffle=shuffle and not overfit,
            seed=self.hparams.seed,
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
            drop_last=self.hparams.drop_last and shuffle,
            device=trainer.strategy.root_device if trainer else "cpu",
        )
        return DeviceLoader(images, labels, sampler, self.mean, self.std)

    def _torchvision_loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        """The classic path, as pytorch/examples' mnist writes it: PIL images, ToTensor and Normalize per
        sample, worker processes optional. (torchvision's v2 ToImage + ToDtype make the same tensors, to
        float rounding, a third slower per sample.)"""
        steps = [transforms.ToTensor(), transforms.Normalize((self.mean,), (self.std,))]
        index = self.indices.get(split)  # None for test, and for val when it is the test set
        cls = DATASETS[self.hparams.name].cls
        dataset = cls(self.hparams.root, train=index is not None, transform=transforms.Compose(steps))
        if index is not None:
            dataset = Subset(dataset, index.tolist())
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=self.hparams.drop_last and shuffle,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def on_after_batch_transfer(
        self, batch: tuple[Tensor, Tensor], dataloader_idx: int
    ) -> tuple[Tensor, Tensor]:
        """Training batches are augmented on the device they train on (mnist_lab.augment)."""
        if self.augment is None or not self.trainer or not self.trainer.training:
            return batch
        images, labels = batch
        return self.augment(images), labels

    def train_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("val", self.hparams.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DeviceLoader | DataLoader:
        return self._loader("test", self.hparams.eval_batch_size, shuffle=False)
