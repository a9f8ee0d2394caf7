"""Screenshots of TensorBoard and the README's pictures, made from a fresh two-run sweep.

    python scripts/screenshots.py [--logdir DIR] [--out outputs/screenshots] [--pictures docs]

Without --logdir it trains `model=mlp,convnet` for 3 short epochs each (about 2 minutes on 2 CPU cores)
under a temporary output root. It serves the runs with TensorBoard on a free local port, photographs the
Time Series, Custom Scalars, HParams, Images and Graphs views with headless Chromium (Debian's `chromium`),
and with --pictures writes learning_curves.png, confusion_matrix.png, tsne_features.png (viz on the
convnet's best checkpoint) and serve.png (the drawing page with that checkpoint, a 7 drawn by
tests/browser.py) there: what `make screenshots` keeps in docs/.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mnist_lab.tensorboard_server import serve_tensorboard

SWEEP = [
    "-m",
    "model=mlp,convnet",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=100",
    "trainer.log_every_n_steps=10",
]
# view: (URL fragment, window height)
VIEWS = {
    "timeseries": ("timeseries", 1600),
    "custom_scalars": ("custom_scalars", 1000),
    "hparams": ("hparams", 1000),
    "images": ("images", 1600),
    "graphs": ("graphs", 1000),
}


def run(*command: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def train_sweep(root: Path) -> Path:
    """The sweep under `root`; returns its multirun directory."""
    env = {**os.environ, "MNIST_LAB_OUTPUT_DIR": str(root)}
    run(sys.executable, "-m", "mnist_lab", *SWEEP, env=env)
    (sweep,) = (root / "multiruns").iterdir()
    return sweep


def screenshot(url: str, path: Path, height: int) -> None:
    """One view after 20 s of the page's virtual time: TensorBoard fetches and draws in the meantime."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: no chromium on PATH (Debian: apt-get install chromium)")
    run(
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size=1600,{height}",
        "--virtual-time-budget=20000",
        f"--screenshot={path}",
        url,
    )
    print(path)


def events(run_dir: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def save_small(image: Image.Image, path: Path, width: int = 1100) -> None:
    """A PNG for the README: at most `width` pixels wide, 256-colour (well under 300 KB)."""
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.convert("RGB").quantize(256).save(path, optimize=True)
    print(path, f"{path.stat().st_size // 1024} KB")


def learning_curves(runs: dict[str, EventAccumulator], path: Path) -> None:
    """Train loss per logged step and val loss per epoch, val accuracy per epoch, for each run."""
    figure, (loss, acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for (name, acc_events), color in zip(runs.items(), plt.cm.tab10.colors, strict=False):
        step = acc_events.Scalars("train/loss_step")
        loss.plot([e.step for e in step], [e.value for e in step], color=color, alpha=0.45, lw=1)
        val = acc_events.Scalars("val/loss")
        loss.plot([e.step for e in val], [e.value for e in val], "o-", color=color, label=f"{name} val")
        val_acc = acc_events.Scalars("val/acc")
        acc.plot([e.step for e in val_acc], [e.value for e in val_acc], "o-", color=color, label=name)
    loss.set(title="loss: train per step (faint), val per epoch", xlabel="optimizer step", yscale="log")
    acc.set(title="validation accuracy", xlabel="optimizer step")
    loss.legend()
    acc.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=100)
    plt.close(figure)
    save_small(Image.open(buffer), path)


def pictures(sweep: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = {d.name.split(",")[0].split("=", 1)[-1]: events(d) for d in sorted(sweep.iterdir()) if d.is_dir()}
    learning_curves(runs, out / "learning_curves.png")
    (matrix,) = runs["convnet"].Images("test/confusion_matrix")
    save_small(Image.open(io.BytesIO(matrix.encoded_image_string)), out / "confusion_matrix.png")
    (checkpoint,) = sweep.glob("model=convnet*/checkpoints/best.ckpt")
    with tempfile.TemporaryDirectory() as viz_root:
        env = {**os.environ, "MNIST_LAB_OUTPUT_DIR": viz_root}
        plain = Path(viz_root) / "convnet.ckpt"  # a sweep dir's `=` and `,` are override syntax to Hydra
        shutil.copy(checkpoint, plain)
        run(sys.executable, "-m", "mnist_lab.viz", f"ckpt_path={plain}", "samples=1500", env=env)
        (tsne,) = Path(viz_root).glob("viz/*/tsne_features.png")
        save_small(Image.open(tsne), out / "tsne_features.png", width=700)
        # the drawing page (python -m mnist_lab.serve) with a 7 drawn in headless Chromium
        print(run(sys.executable, "-m", "tests.browser", str(plain), str(out / "serve.png"), env=env), end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logdir", type=Path, help="runs to show (default: a fresh sweep)")
    parser.add_argument("--out", type=Path, default=Path("outputs/screenshots"))
    parser.add_argument("--pictures", type=Path, help="also write the README's pictures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        logdir = args.logdir or train_sweep(Path(root))
        args.out.mkdir(parents=True, exist_ok=True)
        with serve_tensorboard(logdir) as url:
            for name, (fragment, height) in VIEWS.items():
                screenshot(f"{url}/#{fragment}", args.out / f"{name}.png", height)
        if args.pictures:
            pictures(logdir, args.pictures)


if __name__ == "__main__":
    main()
