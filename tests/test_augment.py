"""Augment draws every image's change on its own, and each setting does what its name says."""

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from torch import Tensor

from mnist_lab.augment import Augment
from mnist_lab.data import MNISTDataModule
from tests.conftest import compose_config


def dots(n: int) -> Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 14, 14] = 1
    return x


def bars(n: int) -> Tensor:
    """A horizontal bar through the centre, 16 pixels long and 2 high."""
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 13:15, 6:22] = 1
    return x


def orientation(x: Tensor) -> Tensor:
    """Each image's main axis in degrees, from its second moments."""
    coords = torch.arange(28.0)
    mass = x.sum((1, 2, 3))
    rows = (x.sum(3).squeeze(1) * coords).sum(1) / mass
    cols = (x.sum(2).squeeze(1) * coords).sum(1) / mass
    dy = coords.view(1, 28, 1) - rows.view(-1, 1, 1)
    dx = coords.view(1, 1, 28) - cols.view(-1, 1, 1)
    w = x.squeeze(1)
    mu20, mu02, mu11 = (w * dx**2).sum((1, 2)), (w * dy**2).sum((1, 2)), (w * dx * dy).sum((1, 2))
    return torch.rad2deg(0.5 * torch.atan2(2 * mu11, mu20 - mu02))


def test_every_setting_off_leaves_the_images_as_they_are() -> None:
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(Augment()(x), x)


def test_shift_moves_each_image_by_its_own_whole_pixels() -> None:
    torch.manual_seed(0)
    shifted = Augment(translate=2)(dots(64))
    positions = shifted.flatten(1).argmax(1)
    rows, cols = positions // 28, positions % 28
    assert torch.allclose(shifted.flatten(1).max(1).values, torch.ones(64))
    assert set(rows.tolist()) <= set(range(12, 17)) and set(cols.tolist()) <= set(range(12, 17))
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 5, "shifts must differ per image"


def test_hflip_mirrors_about_half_of_the_images() -> None:
    torch.manual_seed(0)
    x = torch.rand(200, 1, 28, 28)
    out = Augment(hflip=True)(x)
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 60 < int(mirrored.sum()) < 140


def test_rotation_turns_each_image_by_its_own_angle_within_the_limit() -> None:
    torch.manual_seed(0)
    angles = orientation(Augment(degrees=20)(bars(200)))
    assert angles.abs().max() < 22 and angles.abs().max() > 15
    assert angles.std() > 8, "angles must differ per image"


def test_scale_zooms_each_image_within_the_limit() -> None:
    torch.manual_seed(0)
    x = bars(200)
    ratio = Augment(scale=0.2)(x).sum((1, 2, 3)) / x.sum((1, 2, 3))  # area goes with the zoom squared
    assert ratio.min() > 0.75**2 and ratio.max() < 1.25**2
    assert ratio.min() < 0.85**2 and ratio.max() > 1.15**2


def test_elastic_moves_pixels_by_at_most_its_amplitude() -> None:
    torch.manual_seed(0)
    out = Augment(elastic=2)(dots(100))
    assert not torch.allclose(out, dots(100), atol=1e-3)
    ink = out.squeeze(1) > 1e-4
    rows, cols = ink.nonzero()[:, 1], ink.nonzero()[:, 2]
    # the dot's bilinear footprint: one pixel around where it lands, at most 2 pixels away
    assert (rows - 14).abs().max() <= 3 and (cols - 14).abs().max() <= 3


def test_thickness_thickens_or_thins_each_chosen_image() -> None:
    torch.manual_seed(0)
    x = bars(400)
    out = Augment(thickness=1)(x)
    area = (out > 0.5).sum((1, 2, 3))
    thick, thin = int((area == 18 * 4).sum()), int((area == 0).sum())  # a 2-pixel bar: 4 high or gone
    assert thick + thin == 400 and 140 < thick < 260


def test_lowres_blurs_each_chosen_image_as_a_small_scan_would() -> None:
    torch.manual_seed(0)
    x = torch.rand(300, 1, 28, 28)
    out = Augment(lowres=0.5)(x)
    changed = ~torch.isclose(out, x).flatten(1).all(1)
    assert 100 < int(changed.sum()) < 200
    # pixel noise through 7-14 pixels a side keeps at most half its spread
    assert bool((out[changed].std((1, 2, 3)) < 0.5 * x[changed].std((1, 2, 3))).all())


def test_erase_blanks_one_rectangle_of_each_chosen_image() -> None:
    torch.manual_seed(0)
    x = torch.ones(300, 1, 28, 28)
    blanked = (Augment(erase=0.5)(x) == 0).sum((1, 2, 3)).float() / 784
    chosen = blanked > 0
    assert 100 < int(chosen.sum()) < 200
    assert blanked[chosen].min() >= 0.01 and blanked[chosen].max() <= 0.25


def test_the_data_module_augments_training_batches_only() -> None:
    torch.manual_seed(0)
    dm = MNISTDataModule(augment=Augment(translate=2))
    batch = (dots(32), torch.zeros(32, dtype=torch.long))
    dm.trainer = SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(batch, 0)[0], batch[0])
    dm.trainer = SimpleNamespace(training=True)
    assert not torch.equal(dm.on_after_batch_transfer(batch, 0)[0], batch[0])


@pytest.mark.parametrize("recipe", ["none", "shift", "clothes", "handwriting"])
def test_each_augment_option_builds(recipe: str) -> None:
    dm = instantiate(compose_config(f"augment={recipe}").data)
    assert (dm.augment is None) == (recipe == "none")
    if recipe == "clothes":
        assert dm.augment.hflip and dm.augment.translate == 2
