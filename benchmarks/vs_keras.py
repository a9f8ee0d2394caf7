"""mnist_lab beside the seed's own Keras code, per training image, on this machine.

For each model it runs, in turns, the seed's Keras code (benchmarks/keras_seed.py, in its own virtual
environment with tensorflow-cpu) and `python -m mnist_lab model=...` as a user runs it, in the model's
default precision and, for the CNN, in fp32 (`trainer.precision=32-true`, what CPUs without BF16 get).
Each is a fresh process, round after round, so that a slow spell of the machine hits all alike. An
epoch's training time (validation excluded) over the images it trained on (Keras: 60,000; mnist_lab:
55,000, 5,000 are held out to validate) is its time per image; the table gives the fastest epoch of all
rounds and the mean of all epochs, for each side.
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

from bench import header, publish

BATCH = {"mlp": 32, "cnn": 128}  # both sides: the tutorial's default and mnist_cnn's batch_size
KERAS = "Keras (TF, fp32)"
CONTENDERS = {
    "mlp": {KERAS: None, "mnist_lab": []},
    "cnn": {
        KERAS: None,
        "mnist_lab (bf16-mixed)": [],
        "mnist_lab (fp32)": ["trainer.precision=32-true"],
    },
}


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
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, help="train on this many images an epoch (a quick check)")
    parser.add_argument("--write", type=Path, help="append the table to this Markdown file")
    parser.add_argument("--data-root", default=os.environ.get("MNIST_LAB_DATA_DIR", "data"))
    args = parser.parse_args()
    os.environ["MNIST_LAB_DATA_DIR"] = args.data_root
    first_line = header("cpu")
    print(first_line, flush=True)

    rows = []
    for model in args.models:
        epochs: dict[str, list[float]] = {name: [] for name in CONTENDERS[model]}  # ms per image
        accuracy: dict[str, float] = {}
        for round_ in range(args.rounds):
            for name, overrides in CONTENDERS[model].items():
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
    command = " ".join(["python benchmarks/vs_keras.py", *options])
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
