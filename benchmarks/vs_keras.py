"""mnist_lab beside the seed's own Keras code, per training image, on this machine.

For each model it runs, in turns, the seed's Keras code (benchmarks/keras_seed.py, in its own virtual
environment with tensorflow-cpu) and `python -m mnist_lab model=...` as a user runs it, in the default
precision (`auto`: what this machine computes fast) and, for the CNN where that is not fp32, in fp32 too.
Each is a fresh process, round after round, so that a slow spell of the machine hits all alike. An
epoch's training time (validation excluded) over the images it trained on (Keras: 60,000; mnist_lab:
55,000, 5,000 are held out to validate) is its time per image; the table gives the fastest epoch of all
rounds and the mean of all epochs, for each side. With the CNN, each round also runs
`python -m mnist_lab experiment=speedrun seed=ROUND`: its whole training time against one Keras mnist_cnn
epoch (60,000 images) of the same rounds.
`make bench-keras`, or `python benchmarks/vs_keras.py --keras-python .venv-keras/bin/python`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import command_line, header, publish

from mnist_lab.hardware import auto_precision

BATCH = {"mlp": 32, "cnn": 128}  # both sides: the tutorial's default and mnist_cnn's batch_size
KERAS = "Keras (TF, fp32)"
KERAS_IMAGES = 60_000


def contenders(model: str) -> dict[str, list[str] | None]:
    """Keras (None), then mnist_lab's runs by their overrides: the default, and fp32 if that is not it."""
    if model == "mlp":
        return {KERAS: None, "mnist_lab": []}
    default = auto_precision("cpu")[0]
    runs: dict[str, list[str] | None] = {KERAS: None, f"mnist_lab (default: {default})": []}
    if default != "32-true":
        runs["mnist_lab (fp32)"] = ["trainer.precision=32-true"]
    return runs


def keras_run(python: str, model: str, epochs: int, images: int | None, data_root: str) -> tuple[list, float]:
    command = [
        python,
        str(Path(__file__).with_name("keras_seed.py")),
        f"--model={model}",
        f"--epochs={epochs}",
    ]
    command += [f"--data-root={data_root}"] + ([f"--images={images}"] if images else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: the Keras run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return [s / result["images"] for s in result["epoch_seconds"]], result["test_acc"]


def mnist_lab_results(overrides: list[str]) -> dict:
    """results.json of `python -m mnist_lab OVERRIDES` in a fresh process."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mnist_lab", f"hydra.run.dir={out}", *overrides]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"error: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
        return json.loads((Path(out) / "results.json").read_text())


def mnist_lab_run(model: str, overrides: list[str], epochs: int, images: int | None) -> tuple[list, float]:
    command = [f"model={model}", f"trainer.max_epochs={epochs}", *overrides]
    if images:
        command.append(f"trainer.limit_train_batches={math.ceil(images / BATCH[model])}")
    results = mnist_lab_results(command)
    trained = images or 55_000
    return [s / trained for s in results["epoch_seconds"]], results["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", required=True, help="the python of a venv with tensorflow-cpu")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(BATCH))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, help="train on this many images an epoch (a quick check)")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--data-root", default=os.environ.get("MNIST_LAB_DATA_DIR", "data"))
    args = parser.parse_args()
    os.environ["MNIST_LAB_DATA_DIR"] = args.data_root
    first_line = header("cpu")
    print(first_line, flush=True)

    rows, speedrun, keras_cnn_epochs = [], [], []
    for model in args.models:
        epochs: dict[str, list[float]] = {name: [] for name in contenders(model)}  # ms per image
        accuracy: dict[str, float] = {}
        for round_ in range(args.rounds):
            if model == "cnn" and not args.images:
                results = mnist_lab_results(["experiment=speedrun", f"seed={round_}", "logger=none"])
                speedrun.append((sum(results["epoch_seconds"]), results["test/acc"]))
                print(f"speedrun · round {round_}: {speedrun[-1][0]:.2f} s · test acc {speedrun[-1][1]:.4f}")
            for name, overrides in contenders(model).items():
                if overrides is None:
                    per_image, acc = keras_run(
                        args.keras_python, model, args.epochs, args.images, args.data_root
                    )
                else:
                    per_image, acc = mnist_lab_run(model, overrides, args.epochs, args.images)
                epochs[name] += [1e3 * s for s in per_image]
                accuracy[name] = acc  # the same every round: each run is seeded
                shown = " ".join(f"{s:.3f}" for s in epochs[name][-len(per_image) :])
                print(f"{model} · {name} · round {round_}: {shown} ms/image · test acc {acc:.4f}", flush=True)
        keras = epochs.pop(KERAS)
        if model == "cnn":
            keras_cnn_epochs = [ms * KERAS_IMAGES / 1e3 for ms in keras]
        for name, ours in epochs.items():
            fastest, mean = min(keras) / min(ours), statistics.mean(keras) / statistics.mean(ours)
            cells = [model, BATCH[model], name, f"{min(keras):.3f} / {statistics.mean(keras):.3f}"]
            cells += [f"{min(ours):.3f} / {statistics.mean(ours):.3f}", f"**{fastest:.2f}×** / {mean:.2f}×"]
            cells.append(f"{accuracy[KERAS]:.4f} / {accuracy[name]:.4f}")
            rows.append("| " + " | ".join(map(str, cells)) + " |")

    options = [f"--models {' '.join(args.models)}", f"--epochs {args.epochs}", f"--rounds {args.rounds}"]
    options += [f"--images {args.images}"] if args.images else []
    table = "\n".join(
        [
            "| model | batch | mnist_lab run | Keras ms/image, fastest / mean epoch | mnist_lab ms/image, "
            "fastest / mean | faster than Keras, fastest / mean | test acc Keras / mnist_lab |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    if speedrun:
        seconds = [s for s, _ in speedrun]
        fastest, mean = (
            min(seconds) / min(keras_cnn_epochs),
            statistics.mean(seconds) / statistics.mean(keras_cnn_epochs),
        )
        table += (
            "\n\n| run | seconds of training, per round | test acc | Keras mnist_cnn epoch, fastest / mean "
            "| speedrun / Keras epoch, fastest / mean |\n| --- | --- | --- | --- | --- |\n"
            f"| `experiment=speedrun` | {' '.join(f'{s:.2f}' for s in seconds)} "
            f"| {' '.join(f'{a:.4f}' for _, a in speedrun)} "
            f"| {min(keras_cnn_epochs):.1f} / {statistics.mean(keras_cnn_epochs):.1f} s "
            f"| **{fastest:.3f}** / {mean:.3f} |"
        )
    command = command_line("vs_keras.py", *options)
    keras = keras_version(args.keras_python)
    block = f"{datetime.date.today()} · {first_line}\n\n`{command}` (Keras: {keras})\n\n{table}\n"
    publish(block, args.write)


def keras_version(python: str) -> str:
    code = (
        "import tensorflow as t, keras as k; print(f'tensorflow-cpu {t.__version__}, keras {k.__version__}')"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


if __name__ == "__main__":
    main()
