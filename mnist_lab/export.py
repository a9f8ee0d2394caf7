"""`python -m mnist_lab.export ckpt_path=CKPT [format=onnx|pt2]`: a trained network for other runtimes.

The exported graph takes normalized [N, 1, 28, 28] float32 images (any N) and returns logits. After
writing it, the export runs the same test images through PyTorch and through the exported file
(onnxruntime for ONNX, torch.export.load for pt2) and prints the largest difference between the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from mnist_lab import checkpoints
from mnist_lab.errors import ConfigError, one_line_errors
from mnist_lab.files import refuse_existing, write_atomically

FORMATS = ("onnx", "pt2")


def sample_images(checkpoint: dict, count: int, data_root: str) -> torch.Tensor:
    """The first test images of the checkpoint's dataset, normalized as in training."""
    datamodule = checkpoints.datamodule(checkpoint, data_root)
    datamodule.setup()
    return next(iter(datamodule.test_dataloader()))[0][:count]


def export(
    ckpt_path: Path,
    fmt: str,
    out: Path,
    data_root: str,
    count: int = 256,
    trust: Sequence[str] = (),
    overwrite: bool = False,
) -> float:
    """Write the network to `out` (whole or not at all); return the max abs logit difference from
    PyTorch on test images, read back from the written file."""
    if fmt not in FORMATS:
        raise ConfigError(f"format={fmt}: choose one of {', '.join(FORMATS)}")
    refuse_existing(out, overwrite)
    checkpoint = checkpoints.load(ckpt_path, trust)
    net = checkpoints.network(checkpoint).float()
    images = sample_images(checkpoint, count, data_root)
    with torch.no_grad():
        expected = net(images)
    batch = torch.export.Dim("batch", min=1)
    if fmt == "onnx":
        import onnxruntime

        onnx = torch.onnx.export(
            net, (images,), input_names=["images"], output_names=["logits"], dynamic_shapes=({0: batch},)
        )
        write_atomically(out, lambda f: f.write(onnx.model_proto.SerializeToString()))
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(["logits"], {"images": images.numpy()})[0])
    else:
        program = torch.export.export(net, (images,), dynamic_shapes=({0: batch},))
        write_atomically(out, lambda f: torch.export.save(program, f))
        with torch.no_grad():
            actual = torch.export.load(out).module()(images)
    return (actual - expected).abs().max().item()


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="export")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.output or Path(cfg.paths.output_dir) / f"model.{cfg.format}")
    with one_line_errors():
        difference = export(
            Path(cfg.ckpt_path), cfg.format, out, cfg.data.root, cfg.samples, cfg.trust, cfg.overwrite
        )
    print(f"wrote {out} · parity on {cfg.samples} test images: max |logit difference| = {difference:.2e}")


if __name__ == "__main__":
    main()
