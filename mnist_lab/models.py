"""The networks as plain nn.Modules: the two of the Keras examples the project grew from, and its own.

All end in logits: the softmax lives in the loss. Keras initialises Dense and Conv2D kernels with
Glorot-uniform and biases with zeros; doing the same here is what makes the seed's numbers reproduce.
Any nn.Module that maps [N, 1, 28, 28] images to [N, classes] logits trains with mnist_lab; Penultimate
reads the features it has learned (viz, the TensorBoard projector) from the input of its classifier layer.
"""

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import CenterCrop


def keras_init(module: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every Linear and Conv2d, as Keras does."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class MLP(nn.Sequential):
    """The TensorFlow beginner tutorial: Flatten → Dense 512 relu → Dropout 0.2 → Dense 10."""

    def __init__(self, hidden: int = 512, dropout: float = 0.2, num_classes: int = 10) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(28 * 28, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        keras_init(self)


class Dropout(nn.Dropout):
    """nn.Dropout's inverted dropout (each element kept with probability 1 - p and scaled by 1 / (1 - p)),
    its mask cut from random 64-bit words on a CPU: torch's CPU bernoulli_ draws one number per element,
    18 % of a Keras CNN step in bf16, where 16 bits per element need a quarter of the draws. p is rounded
    to 1/65536. The mask has the layout of its input, so channels_last stays channels_last."""

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p in (0, 1) or x.device.type != "cpu":
            return super().forward(x)
        words = torch.empty((x.numel() + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
        layout = torch.empty_like(x, dtype=torch.int16).stride()  # x's memory order, made dense
        bits = words.view(torch.int16)[: x.numel()].as_strided(x.shape, layout)
        keep = bits >= round(self.p * 65536) - 32768  # int16 bits are uniform over [-32768, 32767]
        return x * keep.to(x.dtype).mul_(1 / (1 - self.p))


class _FlattenKeepingLayout(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        return grad.view(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """nn.Flatten whose gradient keeps channels_last maps channels_last: nn.Flatten's comes back in NCHW
    order, and max-pool's backward then converts it and its indices (~10 % of a CNN step)."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.requires_grad and x.is_contiguous(memory_format=torch.channels_last):
            return _FlattenKeepingLayout.apply(x)
        return super().forward(x)


class CNN(nn.Sequential):
    """Keras' mnist_cnn: two 3×3 convolutions, max-pool, dropout, Dense 128, dropout, Dense 10.

    The max-pool comes before the second ReLU (Keras: after), which is the same function with the same
    gradient, since max and ReLU commute, on a quarter of the elements. Dropout and Flatten are the
    faster ones above; the parameters and their names are those of the plain layers.
    """

    def __init__(
        self,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        dropout: tuple[float, float] = (0.25, 0.5),
        num_classes: int = 10,
    ) -> None:
        c1, c2 = channels
        super().__init__(
            nn.Conv2d(1, c1, 3),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3),
            nn.MaxPool2d(2),
            nn.ReLU(),
            Dropout(dropout[0]),
            Flatten(),
            nn.Linear(c2 * 12 * 12, hidden),
            nn.ReLU(),
            Dropout(dropout[1]),
            nn.Linear(hidden, num_classes),
        )
        keras_init(self)


class ConvNet(nn.Sequential):
    """A small modern CNN for speed and accuracy runs: [conv 3×3 → batch norm → ReLU → max-pool] per width,
    then a linear classifier. Not a Keras model, so PyTorch's default initialisation.

    The ReLU runs after the max-pool, the same function on a quarter of the elements. pool_first pools
    straight after each convolution (airbench's order), so batch norm works on a quarter of the elements
    too: another network, ~1.15× faster (the speedrun's). crop=24 makes the first layer a center crop:
    MNIST's digits sit in the middle 20×20 pixels, so the network skips the empty border and computes
    on 24×24 pixels instead of 28×28 (the speedrun's too). convs=2 puts a [conv → batch norm → ReLU] before
    each stage's pooling convolution: a deeper network at the same widths (VGG's stages).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 64, 128),
        dropout: float = 0.0,
        num_classes: int = 10,
        pool_first: bool = False,
        crop: int | None = None,
        convs: int = 1,
    ) -> None:
        layers: list[nn.Module] = [CenterCrop(crop)] if crop else []
        channels, size = 1, crop or 28
        for width in widths:
            for _ in range(convs - 1):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                channels = width
            conv = nn.Conv2d(channels, width, 3, padding=1, bias=False)
            norm, pool = nn.BatchNorm2d(width), nn.MaxPool2d(2)
            layers += [conv, pool, norm, nn.ReLU()] if pool_first else [conv, norm, pool, nn.ReLU()]
            channels, size = width, size // 2
        super().__init__(
            *layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * size * size, num_classes)
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def mflops_per_image(model: nn.Module) -> float:
    """Millions of floating-point operations (a multiply-add is two) of one image's forward pass, as
    torch's FlopCounterMode counts them (convolutions and matrix products)."""
    model = getattr(model, "_orig_mod", model)
    parameter = next(model.parameters(), torch.zeros(()))
    image = torch.zeros(1, 1, 28, 28, device=parameter.device, dtype=parameter.dtype)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model.eval()(image)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e6


def classifier_layer(net: nn.Module) -> nn.Module | None:
    """The layer whose input is the learned features: the network's `classifier` attribute if it names
    one, else its last nn.Linear; None for a network with neither."""
    named = getattr(net, "classifier", None)
    if isinstance(named, nn.Module):
        return named
    linears = [layer for layer in net.modules() if isinstance(layer, nn.Linear)]
    return linears[-1] if linears else None


class Penultimate:
    """Records, on every forward pass of a network, what it returns (the logits) and what its classifier
    layer sees (the learned features, what viz maps and TensorBoard's projector shows; None when the
    network has no classifier layer to read them from, see classifier_layer)."""

    def __init__(self, net: nn.Module) -> None:
        self.features: Tensor | None = None
        self.logits: Tensor | None = None
        self.layer = classifier_layer(net)
        self._handles = [net.register_forward_hook(self._record_logits)]
        if self.layer is not None:
            self._handles.append(self.layer.register_forward_hook(self._record_features))

    def _record_logits(self, net: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.logits = output.detach()

    def _record_features(self, layer: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.features = inputs[0].detach().flatten(1)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
