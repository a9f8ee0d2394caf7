"""The drawing page: what the server answers to good and bad pictures, and digits drawn in a real browser."""

import base64
import io
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By

from mnist_lab.datasets import DATASETS, load_split
from tests.browser import CHROMEDRIVER, CHROMIUM, DIGITS, MISSING, chrome, draw, open_page, reply, serving
from tests.conftest import cli_env

CLASSES = DATASETS["mnist"].classes  # "0 - zero", ...


@pytest.fixture(scope="module")
def page(
    trained_checkpoint: Path, real_data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("serve")
    with serving(trained_checkpoint, cli_env(tmp, real_data_root)) as url:
        yield url


def post(url: str, body: bytes) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "predict", data=body, method="POST")) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def paper_digit(real_data_root: Path, index: int) -> tuple[bytes, int]:
    """An MNIST test digit as a scan would show it: dark ink on light paper, 4× larger."""
    images, labels = load_split("mnist", str(real_data_root), train=False)
    ink = 255 - images[index].numpy().astype(np.uint8)
    return png(Image.fromarray(ink).resize((112, 112))), int(labels[index])


def still_serving(url: str) -> bool:
    with urllib.request.urlopen(url + "info") as r:
        return r.status == 200 and json.loads(r.read())["drawing"]


def test_the_server_reads_a_picture_and_refuses_bad_ones_with_one_message(
    page: str, real_data_root: Path
) -> None:
    picture, label = paper_digit(real_data_root, 0)
    status, answer = post(page, picture)
    assert status == 200 and answer["top"][0]["name"] == CLASSES[label] and len(answer["top"]) == 3
    assert answer["top"][0]["prob"] >= answer["top"][1]["prob"] >= answer["top"][2]["prob"]
    seen = Image.open(io.BytesIO(base64.b64decode(answer["seen"].split(",")[1])))
    assert seen.size == (28, 28) and seen.mode == "L"

    bad = {
        b"a text file, not a picture": (400, "not a readable image"),
        png(Image.new("L", (280, 280), 255)): (400, "no ink found: the image is blank"),  # an empty canvas
        bytes(6 << 20): (413, "send a picture under 5 MB"),
    }
    for body, (code, message) in bad.items():
        status, answer = post(page, body)
        assert status == code and message in answer["error"]
        assert still_serving(page)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING + "; .ci/run installs them")
def test_digits_drawn_in_a_browser_are_read(page: str, real_data_root: Path, tmp_path: Path) -> None:
    with chrome() as driver:
        open_page(driver, page)
        assert "trained on mnist" in driver.find_element(By.ID, "model").text
        for digit, stroke in DIGITS.items():
            draw(driver, stroke)
            answer, message = reply(driver)
            assert (answer, message) == (CLASSES[int(digit)], ""), f"drew a {digit}"
            assert driver.find_element(By.ID, "seen").get_attribute("src").startswith("data:image/png")
            assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 3
            driver.save_screenshot(str(tmp_path / f"drawn_{digit}.png"))
            driver.find_element(By.ID, "clear").click()
            assert driver.find_element(By.ID, "answer").text == ""

        picture, label = paper_digit(real_data_root, 1)
        (tmp_path / "digit.png").write_bytes(picture)
        (tmp_path / "notes.txt").write_text("not a picture")
        upload = driver.find_element(By.ID, "upload")
        cases = {"notes.txt": ("", "not a readable image"), "digit.png": (CLASSES[label], "")}
        for name, expected in cases.items():
            driver.find_element(
                By.ID, "clear"
            ).click()  # a fresh page state: the reply below is this upload's
            upload.send_keys(str(tmp_path / name))
            answer, message = reply(driver)
            assert answer == expected[0] and expected[1] in message, name
