from pathlib import Path

import numpy as np
from PIL import Image

from mnist_lab import viz


def test_viz_writes_the_pictures_it_names(
    trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    viz.main(
        [
            "--ckpt",
            str(trained_checkpoint),
            "--data-root",
            str(real_data_root),
            "--samples",
            "300",
            "--out",
            str(tmp_path),
        ]
    )
    names = {"samples", "pca_pixels", "tsne_pixels", "pca_features", "tsne_features"}
    assert {p.stem for p in tmp_path.glob("*.png")} == names
    for name in names:
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.width > 300 and image.height > 300
            assert len(np.unique(np.asarray(image.convert("L")))) > 20, f"{name}.png looks empty"
