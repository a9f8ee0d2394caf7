import pytest
import torch

from mnist_lab.models import CNN, MLP, count_parameters


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
