"""Training augmentation drawn per image, for a whole batch at once on its device.

torchvision's transforms draw one set of parameters per call: per image inside a DataLoader worker, or
one for a whole batch on the device. Here every image of a batch gets its own draw, and the geometry
(shift, rotation, scale, shear, mirror, elastic distortion) is one sampling grid and one `grid_sample`;
stroke thickness is a maximum over each 3x3 neighbourhood, resolution two resizes, erasing a mask. The
data module applies it to training batches after they reach the device (`on_after_batch_transfer`),
whichever loader made them. The groups in conf/augment/ name the recipes: `shift`, `clothes`,
`handwriting`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def uniform(n: int, low: float, high: float, device: torch.device) -> Tensor:
    return torch.empty(n, device=device).uniform_(low, high)


def neighbourhood_max(x: Tensor) -> Tensor:
    """The largest value in each pixel's 3x3 neighbourhood: `max_pool2d(x, 3, 1, 1)`, as the maximum of
    shifted views, 15x faster on a CPU (0.15 against 2.3 ms for 256 images of 28x28)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    rows = torch.maximum(torch.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


class Augment(torch.nn.Module):
    """Each setting at 0 (or False) is off.

    translate: largest shift in pixels; degrees: largest rotation; scale: largest relative zoom in or
    out (0.1: 0.9x to 1.1x); shear: largest shear in degrees; hflip: mirror half the images (clothes,
    never digits); elastic: largest displacement in pixels of a smooth random field (drawn at 5x5
    points across the image, interpolated between them); thickness: share of images whose strokes are
    thickened or thinned by one pixel (half each); lowres: share of images seen as a small scan sees
    them: shrunk to 7-14 pixels a side and enlarged back; erase: share of images with one rectangle
    (2-20 % of the image) set to 0, the dataset's mean after normalization.
    """

    def __init__(
        self,
        translate: float = 0,
        degrees: float = 0,
        scale: float = 0,
        shear: float = 0,
        hflip: bool = False,
        elastic: float = 0,
        thickness: float = 0,
        lowres: float = 0,
        erase: float = 0,
    ) -> None:
        super().__init__()
        self.translate, self.degrees, self.scale, self.shear = translate, degrees, scale, shear
        self.hflip, self.elastic = hflip, elastic
        self.thickness, self.lowres, self.erase = thickness, lowres, erase

    def forward(self, x: Tensor) -> Tensor:
        if self.thickness:
            x = self.change_thickness(x)
        if self.translate or self.degrees or self.scale or self.shear or self.hflip or self.elastic:
            x = F.grid_sample(x, self.grid(x), padding_mode="border", align_corners=False)
        if self.lowres:
            x = self.lower_resolution(x)
        if self.erase:
            x = self.erase_rectangles(x)
        return x

    def grid(self, x: Tensor) -> Tensor:
        """Where each output pixel samples its image: the affine map, then the elastic field."""
        n, _, h, w = x.shape
        angle = uniform(n, -self.degrees, self.degrees, x.device) * math.pi / 180
        shear = uniform(n, -self.shear, self.shear, x.device) * math.pi / 180
        zoom = uniform(n, 1 - self.scale, 1 + self.scale, x.device)
        mirror = (
            torch.randint(0, 2, (n,), device=x.device) * 2 - 1
            if self.hflip
            else torch.ones(n, device=x.device)
        )
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(n, 2, 3, device=x.device)
        # rotation times shear along x, divided by the zoom (the grid maps output to input), mirrored in x
        theta[:, 0, 0] = cos * mirror / zoom
        theta[:, 0, 1] = (cos * torch.tan(shear) - sin) / zoom
        theta[:, 1, 0] = sin * mirror / zoom
        theta[:, 1, 1] = (sin * torch.tan(shear) + cos) / zoom
        shift = torch.randint(-int(self.translate), int(self.translate) + 1, (n, 2), device=x.device)
        theta[:, :, 2] = shift * 2 / torch.tensor([w, h], device=x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if self.elastic:
            field = torch.rand(n, 2, 5, 5, device=x.device) * 2 - 1
            field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=True)
            pixels = torch.tensor([2 / w, 2 / h], device=x.device)
            grid = grid + field.permute(0, 2, 3, 1) * self.elastic * pixels
        return grid

    def change_thickness(self, x: Tensor) -> Tensor:
        """Strokes one pixel thicker (a max over each 3x3 neighbourhood) or thinner (a min)."""
        draw = torch.rand(len(x), 1, 1, 1, device=x.device)
        thicker, thinner = neighbourhood_max(x), -neighbourhood_max(-x)
        half = self.thickness / 2
        return torch.where(draw < half, thicker, torch.where(draw < self.thickness, thinner, x))

    def lower_resolution(self, x: Tensor) -> Tensor:
        """The chosen images shrunk (antialiased) to a side drawn per image, and enlarged back. The sides
        are drawn on the CPU: the loop over them then never waits for a GPU."""
        n, _, h, w = x.shape
        sides = torch.randint(7, 15, (n,))
        sides[torch.rand(n) >= self.lowres] = 0
        out = x.clone()
        for side in sides.unique().tolist():
            if side:
                index = (sides == side).nonzero().squeeze(1).to(x.device)
                small = F.interpolate(x[index], size=(side, side), mode="bilinear", antialias=True)
                out[index] = F.interpolate(small, size=(h, w), mode="bilinear")
        return out

    def erase_rectangles(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        area = uniform(n, 0.02, 0.2, x.device) * h * w
        aspect = torch.exp(uniform(n, math.log(0.3), math.log(3.3), x.device))
        height = (area * aspect).sqrt().clamp(1, h)
        width = (area / aspect).sqrt().clamp(1, w)
        top = torch.rand(n, device=x.device) * (h - height)
        left = torch.rand(n, device=x.device) * (w - width)
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = (rows >= top.view(n, 1, 1)) & (rows < (top + height).view(n, 1, 1))
        inside = inside & (cols >= left.view(n, 1, 1)) & (cols < (left + width).view(n, 1, 1))
        chosen = torch.rand(n, 1, 1, device=x.device) < self.erase
        return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)
