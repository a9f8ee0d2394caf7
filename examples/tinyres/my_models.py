"""A researcher's own network, kept outside mnist_lab: a small residual CNN written the ordinary way, an
nn.Module with its own forward. README.md ("Add your own model") shows it with every mnist_lab command."""

from torch import Tensor, nn


def conv_bn(channels_in: int, channels_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(channels_out),
    )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first = conv_bn(channels, channels)
        self.second = conv_bn(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.second(self.first(x).relu())).relu()


class TinyResNet(nn.Module):
    """stem → residual block → strided conv (width ×2, 14×14) → residual block → global average → linear."""

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(1, width)
        self.block1 = ResidualBlock(width)
        self.down = conv_bn(width, 2 * width, stride=2)
        self.block2 = ResidualBlock(2 * width)
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block1(self.stem(x).relu())
        x = self.block2(self.down(x).relu())
        return self.head(x.mean((2, 3)))
