"""The networks as plain nn.Modules: the two of the Keras examples the project grew from, and its own.

All end in logits: the softmax lives in the loss. Keras initialises Dense and Conv2D kernels with
Glorot-uniform and biases with zeros; doing the same here is what makes the seed's numbers reproduce.
Penultimate reads the features a network has learned (viz, the TensorBoard projector).
"""

from torch import Tensor, nn


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


class CNN(nn.Sequential):
    """Keras' mnist_cnn: two 3×3 convolutions, max-pool, dropout, Dense 128, dropout, Dense 10."""

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
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(dropout[0]),
            nn.Flatten(),
            nn.Linear(c2 * 12 * 12, hidden),
            nn.ReLU(),
            nn.Dropout(dropout[1]),
            nn.Linear(hidden, num_classes),
        )
        keras_init(self)


class ConvNet(nn.Sequential):
    """A small modern CNN for speed and accuracy runs: [conv 3×3 → batch norm → ReLU → max-pool] per width,
    then a linear classifier. Not a Keras model, so PyTorch's default initialisation."""

    def __init__(
        self, widths: tuple[int, ...] = (32, 64, 128), dropout: float = 0.0, num_classes: int = 10
    ) -> None:
        layers: list[nn.Module] = []
        channels, size = 1, 28
        for width in widths:
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels, size = width, size // 2
        super().__init__(
            *layers, nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * size * size, num_classes)
        )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Penultimate:
    """Records, on every forward pass of a network, what its last layer sees (the learned features, what
    viz maps and TensorBoard's projector shows) and what it returns (the logits)."""

    def __init__(self, net: nn.Sequential) -> None:
        self.features: Tensor | None = None
        self.logits: Tensor | None = None
        self._handle = net[-1].register_forward_hook(self._record)

    def _record(self, layer: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.features, self.logits = inputs[0].detach().flatten(1), output.detach()

    def remove(self) -> None:
        self._handle.remove()
