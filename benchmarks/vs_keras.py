"""mnist_lab beside the seed's own Keras code, per training image, on this machine.

For each model it runs, in turns, the seed's Keras code (benchmarks/keras_seed.py, in its own virtual
environment with tensorflow-cpu) and `python -m mnist_lab model=...` as a user runs it, in the model's
default precision and, for the CNN, in fp32 (`trainer.precision=32-true`, what CPUs without BF16 get).
Each is a fresh process; the first epoch is the warm-up and the fastest later epoch counts (validation
excluded), divided by the images it trained on (Keras: 60,000; mnist_lab: 55,000, 5,000 are held out to
validate). Round after round, so a slow spell of the machine hits all alike; the best round counts.
`make bench-keras`, or `python benchmarks/vs_keras.py --keras-python .venv-keras/bin/python`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import header

BATCH = {"mlp": 32, "cnn": 128}  # both sides: the tutorial's default and mnist_cnn's batch_size
CONTENDERS = {
    "mlp": {"Keras (TF, fp32)": None, "mnist_lab": []},
    "cnn": {
        "Keras (TF, fp32)": None,
        "mnist_lab (bf16-mixed)": [],
        "mnist_lab (fp32)": ["trainer.precision=32-true"],
    },
}


def keras_run(python: str, model: str, epochs: int, images: int | None, data_root: str) -> tuple[list, float]:
    command = [python, "benchmarks/keras_seed.py", f"--model={model}", f"--epochs={epochs}"]
    command += [f"--data-root={data_root}"] + ([f"--images={images}"] if images else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: the Keras run failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return [s / result["images"] for s in result["epoch_seconds"]], result["test_acc"]


def mnist_lab_run(model: str, overrides: list[str], epochs: int, images: int | None) -> tuple[list, float]:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "mnist_lab", f"model={model}", f"trainer.max_epochs={epochs}"]
        command += [f"hydra.run.dir={out}", *overrides]
        if images:
            command.append(f"trainer.limit_train_batches={math.ceil(images / BATCH[model])}")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"error: {' '.join(command)} failed:\n{done.stderr[-3000:]}")
        results = json.loads((Path(out) / "results.json").read_text())
    trained = images or 55_000
    return [s / trained for s in results["epoch_seconds"]], results["test/acc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-python", required=True, help="the python of a venv with tensorflow-cpu")
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn"], choices=list(CONTENDERS))
    parser.add_argument("--epochs", type=int, default=2, help="the first one is the warm-up")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--images", type=int, help="train on this many images an epoch (a quick check)")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--data-root", default=os.environ.get("MNIST_LAB_DATA_DIR", "data"))
    args = parser.parse_args()
    os.environ["MNIST_LAB_DATA_DIR"] = args.data_root
    first_line = header("cpu")
    print(first_line, flush=True)

    rows = []
    for model in args.models:
        best: dict[str, tuple[float, float]] = {}
        for round_ in range(args.rounds):
            for name, overrides in CONTENDERS[model].items():
                if overrides is None:
                    per_image, acc = keras_run(
                        args.keras_python, model, args.epochs, args.images, args.data_root
                    )
                else:
                    per_image, acc = mnist_lab_run(model, overrides, args.epochs, args.images)
                epochs = " ".join(f"{1e3 * s:.3f}" for s in per_image)
                print(
                    f"{model} · {name} · round {round_}: {epochs} ms/image · test acc {acc:.4f}", flush=True
                )
                timed = min(per_image[1:] or per_image)
                if name not in best or timed < best[name][0]:
                    best[name] = (timed, acc)
        keras, keras_acc = best.pop("Keras (TF, fp32)")
        for name, (timed, acc) in best.items():
            cells = [model, BATCH[model], name, f"{1e3 * keras:.3f}", f"{1e3 * timed:.3f}"]
            cells += [f"**{keras / timed:.2f}×**", f"{keras_acc:.4f} / {acc:.4f}"]
            rows.append("| " + " | ".join(map(str, cells)) + " |")

    options = [f"--models {' '.join(args.models)}", f"--epochs {args.epochs}", f"--rounds {args.rounds}"]
    options += [f"--images {args.images}"] if args.images else []
    table = "\n".join(
        [
            "| model | batch | mnist_lab run | Keras ms/image | mnist_lab ms/image | faster than Keras "
            "| test acc Keras / mnist_lab |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    command = " ".join(["python benchmarks/vs_keras.py", *options])
    keras = keras_version(args.keras_python)
    block = f"{datetime.date.today()} · {first_line}\n\n`{command}` (Keras: {keras})\n\n{table}\n"
    print("\n" + block)
    if args.write:
        with args.write.open("a") as f:
            f.write("\n" + block)


def keras_version(python: str) -> str:
    code = (
        "import tensorflow as t, keras as k; print(f'tensorflow-cpu {t.__version__}, keras {k.__version__}')"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


if __name__ == "__main__":
    main()
