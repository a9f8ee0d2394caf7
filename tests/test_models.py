import copy

import pytest
import torch
from torch import nn

from mnist_lab.models import CNN, MLP, ConvNet, Dropout, count_parameters


@pytest.mark.parametrize(("model", "params"), [(MLP(), 407_050), (CNN(), 1_199_882)])
def test_parameter_counts_match_keras(model: torch.nn.Module, params: int) -> None:
    assert count_parameters(model) == params


@pytest.mark.parametrize(
    "model", [MLP(), CNN(), MLP(hidden=64, dropout=0.0), CNN(channels=(8, 16), hidden=32)]
)
def test_logits_shape(model: torch.nn.Module) -> None:
    assert model(torch.randn(5, 1, 28, 28)).shape == (5, 10)


def test_keras_initialisation() -> None:
    torch.manual_seed(0)
    dense = MLP()[1]
    assert torch.count_nonzero(dense.bias) == 0
    limit = (6 / (784 + 512)) ** 0.5  # Glorot-uniform bound
    assert dense.weight.abs().max() <= limit
    assert dense.weight.abs().max() > 0.95 * limit


@pytest.mark.parametrize("p", [0.25, 0.5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_dropout_keeps_each_element_with_probability_1_minus_p(
    p: float, memory_format: torch.memory_format
) -> None:
    torch.manual_seed(0)
    x = torch.ones(64, 32, 24, 24).contiguous(memory_format=memory_format)
    out = Dropout(p)(x)
    assert out.is_contiguous(memory_format=memory_format)
    assert out.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]
    kept = (out != 0).double()
    assert kept.mean().item() == pytest.approx(1 - p, abs=0.002)  # 1.2M draws: sd 0.0005
    # no pattern across channels or positions (the bits of one 64-bit word land in neighbours)
    sd = (p * (1 - p) / (64 * 24 * 24)) ** 0.5
    assert (kept.mean((0, 2, 3)) - (1 - p)).abs().max() < 5 * sd
    assert not torch.equal(Dropout(p)(x), out)  # a new mask every call
    assert torch.equal(Dropout(p).eval()(x), x)


def test_cnn_computes_keras_order_with_torch_layers() -> None:
    """ReLU after the max-pool, our Dropout and Flatten: the logits and every gradient of Keras' order
    with torch's layers (dropout off, so both draw nothing)."""
    torch.manual_seed(0)
    ours = CNN(dropout=(0.0, 0.0)).to(memory_format=torch.channels_last)
    keras = copy.deepcopy(ours)
    keras[3], keras[4] = nn.ReLU(), nn.MaxPool2d(2)
    keras[5], keras[6], keras[9] = nn.Dropout(0.0), nn.Flatten(), nn.Dropout(0.0)
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    for net in (ours, keras):
        torch.nn.functional.cross_entropy(net(x), y).backward()
    assert torch.equal(ours(x), keras(x))
    for (name, a), b in zip(ours.named_parameters(), keras.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_convnet_pool_first_and_crop_keep_the_parameters() -> None:
    sizes = [count_parameters(ConvNet(pool_first=True)), count_parameters(ConvNet(crop=24)), 104_426]
    assert sizes == [count_parameters(ConvNet())] * 3


def test_convnet_crop_reads_only_the_middle_of_the_image() -> None:
    net = ConvNet((8, 16), crop=24).eval()
    x = torch.randn(4, 1, 28, 28)
    border = torch.ones_like(x, dtype=torch.bool)
    border[:, :, 2:26, 2:26] = False
    assert torch.equal(net(x), net(x.masked_fill(border, 0.0)))
    assert not torch.equal(net(x), net(x.masked_fill(~border, 0.0)))


def test_convnet_with_two_convs_per_stage_adds_a_conv_before_each_pooling_one() -> None:
    one, two = ConvNet((8, 16)), ConvNet((8, 16), convs=2)
    convs = [m for m in two if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 8), (8, 8), (8, 16), (16, 16)]
    # the two extra 3×3 convolutions (8→8, 16→16) and their batch norms' weights and biases
    assert count_parameters(two) - count_parameters(one) == 9 * (8 * 8 + 16 * 16) + 2 * (8 + 16)
    assert two(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
