"""The drawing page (`python -m mnist_lab.serve`) in a real browser: Debian's headless Chromium, driven by
Selenium with pointer events, as a person with a mouse or pen would draw.

`python -m tests.browser CKPT OUT.png` draws a 7 and photographs the page (`make screenshots` does, for
docs/serve.png); tests/test_serve.py draws more.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"


def ellipse(cx: float, cy: float, rx: float, ry: float, points: int = 40) -> list[tuple[float, float]]:
    angles = [2 * math.pi * i / points for i in range(points + 1)]
    return [(cx + rx * math.sin(a), cy - ry * math.cos(a)) for a in angles]


# Strokes on the 280×280 canvas, in canvas pixels: each digit is one stroke, drawn as a hand would
DIGITS = {
    "1": [(150, 45), (150, 235)],
    "7": [(80, 60), (200, 60), (190, 90), (125, 235)],
    "0": ellipse(140, 140, 62, 92),
}


@contextmanager
def serving(checkpoint: Path, env: Mapping[str, str], *settings: str) -> Iterator[str]:
    """`python -m mnist_lab.serve` on a free port; yields the page's address."""
    command = [sys.executable, "-m", "mnist_lab.serve", f"ckpt_path={checkpoint}", "port=0", *settings]
    server = subprocess.Popen(
        command, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stderr is not None
        for line in server.stdout:
            if line.startswith("serving "):
                yield line.split()[1]
                return
        raise RuntimeError(f"mnist_lab.serve did not start:\n{server.stderr.read()[-3000:]}")
    finally:
        server.terminate()
        server.wait(timeout=30)


@contextmanager
def chrome(width: int = 1000, height: int = 600) -> Iterator[WebDriver]:
    if not (CHROMIUM and CHROMEDRIVER):
        raise RuntimeError(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def draw(driver: WebDriver, stroke: list[tuple[float, float]]) -> None:
    """One stroke, pressed at its first point and lifted at its last (Selenium offsets are from the
    canvas's centre)."""
    canvas = driver.find_element(By.ID, "pad")
    half_w, half_h = canvas.size["width"] / 2, canvas.size["height"] / 2
    (x0, y0), *rest = stroke
    actions = ActionChains(driver, duration=10)
    actions.move_to_element_with_offset(canvas, int(x0 - half_w), int(y0 - half_h)).click_and_hold()
    for (xa, ya), (xb, yb) in zip(stroke, rest, strict=False):
        actions.move_by_offset(int(xb) - int(xa), int(yb) - int(ya))
    actions.release().perform()


def reply(driver: WebDriver) -> tuple[str, str]:
    """The page's answer (the top class) and its error message, once the server has replied."""
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("answered", "error")
    )
    return driver.find_element(By.ID, "answer").text, driver.find_element(By.ID, "message").text


def open_page(driver: WebDriver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "model").text)


def main() -> None:
    checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2])
    with serving(checkpoint, os.environ) as url, chrome() as driver:
        open_page(driver, url)
        draw(driver, DIGITS["7"])
        answer, message = reply(driver)
        driver.save_screenshot(str(out))
    print(f"{out}: the page read a drawn 7 as {answer!r} {message}")


if __name__ == "__main__":
    main()
