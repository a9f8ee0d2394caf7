"""`python -m mnist_lab.serve ckpt_path=CKPT`: a page to draw a digit, or upload a picture, and see what
the model reads, beside the 28×28 picture it actually sees (predict's preparation, mnist_lab/predict.py).

One HTML page (serve.html: a canvas for mouse, pen and touch) and Python's own HTTP server, so the demo
needs nothing beyond what the project installs. Gradio, the usual choice for model demos, would add a
web framework and its front end as dependencies and hide the canvas behind its own components; this page
is short enough to read, and a browser test drives its canvas with plain pointer events.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image

from mnist_lab import checkpoints
from mnist_lab.datasets import DATASETS
from mnist_lab.errors import UserError, one_line_errors
from mnist_lab.predict import ImageError, read_image, to_mnist

log = logging.getLogger("mnist_lab")
MAX_UPLOAD = 5 << 20  # bytes: a photo from a phone fits, a mistaken upload of something else does not


class Reader:
    """A checkpoint's network and what it needs to read one picture."""

    def __init__(self, ckpt_path: str, trust: Sequence[str] = (), top: int = 3) -> None:
        checkpoint = checkpoints.load(ckpt_path, trust)
        self.dataset = checkpoint["config"]["data"]["name"]
        self.classes = DATASETS[self.dataset].classes
        self.mean, self.std = checkpoints.normalization(checkpoint)
        self.net = checkpoints.network(checkpoint)
        self.model = checkpoint["config"]["model"]["_target_"].rpartition(".")[2]
        self.top = top
        self.lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def info(self) -> dict[str, Any]:
        return {
            "description": f"{self.model} trained on {self.dataset}: draw, or upload a picture",
            "drawing": self.dataset == "mnist",  # a hand draws digits; clothes come as photos
            "classes": list(self.classes),
        }

    def read(self, picture: bytes) -> dict[str, Any]:
        """The top classes with their probabilities, and the 28×28 input as a PNG data URL."""
        x = to_mnist(read_image(io.BytesIO(picture)), self.mean, self.std)
        with self.lock, torch.no_grad():
            probs = self.net(x[None]).float().softmax(1)[0]
        ranked = probs.argsort(descending=True)[: self.top].tolist()
        seen = (x[0] * self.std + self.mean).clamp(0, 1).mul(255).round().byte().numpy()
        png = io.BytesIO()
        Image.fromarray(seen).save(png, format="PNG")
        return {
            "top": [{"name": self.classes[k], "prob": probs[k].item()} for k in ranked],
            "seen": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode(),
        }


def handler(reader: Reader) -> type[BaseHTTPRequestHandler]:
    page = files("mnist_lab").joinpath("serve.html").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        timeout = 30  # seconds a request may stall mid-body before its connection is closed

        def do_GET(self) -> None:
            if self.path == "/":
                self.send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif self.path == "/info":
                self.send_json(HTTPStatus.OK, reader.info())
            else:
                self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                return self.send_json(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})
            length = self.headers.get("Content-Length", "")
            if not length.isdigit():  # a size the client states, read as one only when it is one
                self.close_connection = True
                return self.send_json(HTTPStatus.LENGTH_REQUIRED, {"error": "send the picture with its size"})
            length = int(length)
            if length > MAX_UPLOAD:
                # read and dropped: a browser shows no reply to a request it could not finish sending
                for start in range(0, length, 1 << 20):
                    self.rfile.read(min(1 << 20, length - start))
                too_large = f"the file is {length / 2**20:.1f} MB; send a picture under {MAX_UPLOAD >> 20} MB"
                return self.send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": too_large})
            try:
                self.send_json(HTTPStatus.OK, reader.read(self.rfile.read(length)))
            except ImageError as err:
                self.send_json(HTTPStatus.BAD_REQUEST, {"error": str(err)})

        def send_json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            self.send(status, json.dumps(body).encode(), "application/json")

        def send(self, status: HTTPStatus, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    return Handler


@hydra.main(version_base="1.3", config_path="pkg://mnist_lab.conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    with one_line_errors():
        reader = Reader(cfg.ckpt_path, cfg.trust, cfg.top)
        try:
            server = ThreadingHTTPServer((cfg.host, cfg.port), handler(reader))
        except OSError as err:
            raise UserError(
                f"cannot serve on {cfg.host}:{cfg.port} ({err.strerror}); choose another port="
            ) from None
    host, port = server.server_address[:2]
    print(f"serving http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
