"""`python -m mnist_lab.export CKPT [--format onnx|pt2] [--out FILE]`: a trained network for other runtimes.

The exported graph takes normalized [N, 1, 28, 28] float32 images (any N) and returns logits. After
writing it, the export runs the same test images through PyTorch and through the exported file
(onnxruntime for ONNX, torch.export.load for pt2) and prints the largest difference between the logits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

from mnist_lab import checkpoints
from mnist_lab.errors import UserError
from mnist_lab.evaluate import restore

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}


def sample_images(checkpoint: dict, count: int, data_root: str | None) -> torch.Tensor:
    """The first test images of the checkpoint's dataset, normalized as in training."""
    datamodule = instantiate(checkpoint["config"]["data"], **({"root": data_root} if data_root else {}))
    datamodule.setup()
    return next(iter(datamodule.test_dataloader()))[0][:count]


def export(ckpt_path: Path, fmt: str, out: Path, data_root: str | None = None, count: int = 256) -> float:
    """Write the network to `out`; return the max abs logit difference from PyTorch on test images."""
    checkpoint = checkpoints.load(ckpt_path)
    net = restore(checkpoint).net.float().to(memory_format=torch.contiguous_format)
    images = sample_images(checkpoint, count, data_root)
    with torch.no_grad():
        expected = net(images)
    batch = torch.export.Dim("batch", min=1)
    if fmt == "onnx":
        import onnxruntime

        torch.onnx.export(
            net, (images,), out, input_names=["images"], output_names=["logits"], dynamic_shapes=({0: batch},)
        )
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        actual = torch.from_numpy(session.run(["logits"], {"images": images.numpy()})[0])
    else:
        program = torch.export.export(net, (images,), dynamic_shapes=({0: batch},))
        torch.export.save(program, out)
        with torch.no_grad():
            actual = torch.export.load(out).module()(images)
    return (actual - expected).abs().max().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--format", choices=sorted(FORMATS), default="onnx")
    parser.add_argument("--out", type=Path, help="default: the checkpoint's path with the format's suffix")
    parser.add_argument(
        "--data-root", help="where the test images for the parity check live (default: the run's)"
    )
    args = parser.parse_args(argv)
    out = args.out or args.checkpoint.with_suffix(FORMATS[args.format])
    if out.exists():
        sys.exit(f"error: {out} exists; choose another --out (nothing is overwritten)")
    try:
        difference = export(args.checkpoint, args.format, out, args.data_root)
    except UserError as err:
        sys.exit(f"error: {err}")
    print(f"wrote {out} · parity on 256 test images: max |logit difference| = {difference:.2e}")


if __name__ == "__main__":
    main()
