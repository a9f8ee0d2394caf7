"""The seed's own Keras code, timed on this machine: the TensorFlow beginner tutorial's MLP and Keras'
mnist_cnn example, built and compiled as they write them, fed the same MNIST files mnist_lab reads.

It runs in its own virtual environment with tensorflow-cpu (`make bench-keras` makes .venv-keras), never
in the project's: TensorFlow is no dependency of mnist_lab. `benchmarks/vs_keras.py` calls it and puts
its times beside mnist_lab's. Prints one JSON line: seconds of each training epoch (validation
excluded), images per epoch and the test accuracy at the end.
`python benchmarks/keras_seed.py --model cnn --epochs 2 --data-root DIR`
"""

import argparse
import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


def idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format): a big-endian header of dimension sizes, then unsigned bytes."""
    raw = path.read_bytes()
    dims = raw[3]
    shape = np.frombuffer(raw, ">u4", count=dims, offset=4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_data(root: str, images: int | None) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """What keras.datasets.mnist.load_data() returns, from the files torchvision lays out (no download;
    mnist_lab.datasets is not installed beside TensorFlow); the first `images` training images if given."""
    raw = Path(root) / "MNIST" / "raw"
    return (
        (idx(raw / "train-images-idx3-ubyte")[:images], idx(raw / "train-labels-idx1-ubyte")[:images]),
        (idx(raw / "t10k-images-idx3-ubyte"), idx(raw / "t10k-labels-idx1-ubyte")),
    )


class EpochTimes(keras.callbacks.Callback):
    """Training time of each epoch; validation, which fit runs at the epoch's end, is left out."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()
        self.seconds.append(float("nan"))

    def on_test_begin(self, logs: dict | None = None) -> None:
        self.seconds[-1] = time.perf_counter() - self.started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if math.isnan(self.seconds[-1]):  # no validation this epoch
            self.seconds[-1] = time.perf_counter() - self.started


def mlp(data: tuple, epochs: int, timer: EpochTimes) -> float:
    """The TensorFlow 2 quickstart for beginners."""
    (x_train, y_train), (x_test, y_test) = data
    x_train, x_test = x_train / 255.0, x_test / 255.0
    model = keras.models.Sequential(
        [
            keras.layers.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, callbacks=[timer], verbose=2)
    return model.evaluate(x_test, y_test, verbose=0)[1]


def cnn(data: tuple, epochs: int, timer: EpochTimes) -> float:
    """keras-team/keras examples/mnist_cnn.py: batch 128, Adadelta, the test set as validation data."""
    batch_size, num_classes = 128, 10
    (x_train, y_train), (x_test, y_test) = data
    x_train = x_train.reshape(x_train.shape[0], 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(x_test.shape[0], 28, 28, 1).astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)
    model = keras.models.Sequential(
        [
            keras.layers.Input((28, 28, 1)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.Conv2D(64, (3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Dropout(0.25),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    # Keras 1/2's Adadelta defaults (lr 1.0, rho 0.95, epsilon 1e-7), as the example used them
    model.compile(
        loss=keras.losses.categorical_crossentropy,
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0, rho=0.95, epsilon=1e-7),
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=2,
        validation_data=(x_test, y_test),
        callbacks=[timer],
    )
    return model.evaluate(x_test, y_test, verbose=0)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("mlp", "cnn"), required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--images", type=int, help="train on the first N images only (a quick check)")
    parser.add_argument("--data-root", default=os.environ.get("MNIST_LAB_DATA_DIR", "data"))
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    timer = EpochTimes()
    data = load_data(args.data_root, args.images)
    accuracy = {"mlp": mlp, "cnn": cnn}[args.model](data, args.epochs, timer)
    print(
        json.dumps(
            {
                "model": args.model,
                "epoch_seconds": timer.seconds,
                "images": len(data[0][0]),
                "test_acc": accuracy,
                "threads": tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count(),
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
