"""The Hydra configs, shipped inside the package as `mnist_lab.conf` (see pyproject.toml)."""
