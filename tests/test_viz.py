from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import run_cli


def test_viz_writes_the_pictures_it_names(
    trained_checkpoint: Path, real_data_root: Path, tmp_path: Path
) -> None:
    done = run_cli(
        tmp_path, real_data_root, f"ckpt_path={trained_checkpoint}", "samples=300", tool="mnist_lab.viz"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (out,) = (tmp_path / "out" / "viz").iterdir()
    names = {"samples", "pca_pixels", "tsne_pixels", "pca_features", "tsne_features"}
    assert {p.stem for p in out.glob("*.png")} == names
    assert {Path(line).stem for line in done.stdout.split()} == names, "it prints what it wrote"
    for name in names:
        with Image.open(out / f"{name}.png") as image:
            assert image.width > 300 and image.height > 300
            rgb = np.asarray(image.convert("RGB")).astype(int)
        # empty axes with a title: 0 % coloured and < 1 % dark pixels (measured); drawn data is far more
        if name == "samples":  # dark digits on white
            assert (rgb.max(axis=2) < 60).mean() > 0.03, f"{name}.png shows no digits"
        else:  # points coloured by class
            assert (rgb.max(axis=2) - rgb.min(axis=2) > 40).mean() > 0.01, f"{name}.png shows no points"
