"""`rm-edit demo` in a real browser (issue #24 item 4): headless Debian chromium driven by selenium against the
demo started on a free local port. Needs the demo extra (`pip install -e ".[demo]"`) and chromium +
chromium-driver (the README's test command installs them); the first result's latency is printed."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import rm_edit

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "example.png"
INSTRUCTION = "turn the green square red"  # the README's Quick start instruction
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytest.importorskip("gradio", reason='the demo extra is not installed: pip install -e ".[demo]"')
webdriver = pytest.importorskip("selenium.webdriver", reason='selenium (the demo extra) is not installed')
if CHROMIUM is None or DRIVER is None:
    pytest.skip("chromium / chromium-driver not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SCREENSHOT = os.environ.get("RM_EDIT_DEMO_SCREENSHOT")  # e.g. assets/demo.png: save the page there


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rm_edit.cli", "demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"demo did not start: {proc.stdout.read()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.send_signal(signal.SIGINT)  # its own pid only
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="rm_edit_chromium_")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1400,1100"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _source_src(browser) -> str | None:
    shown = browser.find_elements(By.CSS_SELECTOR, "#source img")
    return shown[0].get_attribute("src") if shown else None


def _upload(browser, path: Path) -> None:
    """Upload ``path`` and wait until the source shows it: a new picture, not the one shown before (under load the
    upload lands after a click that would otherwise edit the previous image)."""
    before = _source_src(browser)
    browser.find_element(By.CSS_SELECTOR, "#source input[type=file]").send_keys(str(path))
    WebDriverWait(browser, 60).until(lambda d: _source_src(d) not in (None, before))


def _ask(browser, text: str) -> None:
    box = browser.find_element(By.CSS_SELECTOR, "#instruction textarea")
    box.clear()
    box.send_keys(text)
    browser.find_element(By.CSS_SELECTOR, "#run").click()


def _status(browser) -> str:
    return browser.find_element(By.CSS_SELECTOR, "#status").text.strip()


def _image(src: str) -> np.ndarray:
    with urllib.request.urlopen(src, timeout=10) as r:
        return np.asarray(PIL.Image.open(io.BytesIO(r.read())).convert("RGB"))


def test_demo_edits_like_the_pipeline_and_refuses_in_one_line(server, browser, tmp_path) -> None:
    browser.get(server)
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#run"))
    _upload(browser, EXAMPLE)
    start = time.perf_counter()
    _ask(browser, INSTRUCTION)
    WebDriverWait(browser, 120).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#result img"))
    WebDriverWait(browser, 30).until(lambda d: "forward passes" in _status(d))
    latency = time.perf_counter() - start
    print(f"\ndemo: first result {latency:.2f} s after the click")

    shown = _image(browser.find_element(By.CSS_SELECTOR, "#result img").get_attribute("src"))
    pipe = rm_edit.load_default_pipeline()
    expected = pipe(PIL.Image.open(EXAMPLE), INSTRUCTION, generator=torch.Generator().manual_seed(0),
                    paste_back=True)
    assert np.array_equal(shown, np.asarray(expected.images[0].convert("RGB")))
    overlay = _image(browser.find_element(By.CSS_SELECTOR, "#overlay img").get_attribute("src"))
    assert overlay.shape[0] >= 256 and overlay.shape[0] % 64 == 0  # the 64-px edit scaled up, region tinted
    region = np.kron(expected.edit_masks[0], np.ones((overlay.shape[0] // 64,) * 2, dtype=bool))
    assert (np.abs(overlay.astype(int) - np.kron(np.asarray(expected.images[0]), np.ones((overlay.shape[0] // 64,) * 2 + (1,), dtype=np.uint8)).astype(int)).sum(-1) > 0)[region].all()
    assert browser.find_elements(By.CSS_SELECTOR, "#strip img")
    assert "4 re-masked, 4 of 64 image codes changed" in _status(browser)
    if SCREENSHOT:
        browser.save_screenshot(str(ROOT / SCREENSHOT))

    _ask(browser, "make the sky blue")
    WebDriverWait(browser, 60).until(lambda d: "not a word this model knows" in _status(d))
    assert "'sky'" in _status(browser) and "\n" not in _status(browser)
    assert not browser.find_elements(By.CSS_SELECTOR, "#result img")  # the refused edit shows no picture

    big = tmp_path / "big.png"
    PIL.Image.new("RGB", (1500, 1500), (238, 228, 205)).save(big)  # 2.25 Mpx, a few kB
    _upload(browser, big)
    _ask(browser, INSTRUCTION)
    WebDriverWait(browser, 60).until(lambda d: "pixels" in _status(d) and "at most" in _status(d))
    assert "1500x1500 (2,250,000 pixels); this demo takes at most 1,048,576 pixels" in _status(browser)
