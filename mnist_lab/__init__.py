"""mnist_lab: train, compare and look inside the classic MNIST and Fashion-MNIST models."""
