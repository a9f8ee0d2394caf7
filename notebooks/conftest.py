"""The test suite runs the notebooks (nbmake) in their fast mode: small subsets, a few seconds each."""

import os

os.environ.setdefault("MNIST_LAB_FAST", "1")
