"""``deepkit serve``'s page in a real headless Chromium (Playwright), as a person uses it: open the page, upload a
digit image, see the right class at the top of the bars.

Needs the ``playwright`` package and its Chromium (``python -m playwright install chromium``; ``make test-all``
runs it). Where the browser cannot be installed (no network to its download host), the test skips and says so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'deepkit[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")

import deepkit  # noqa: E402
from deepkit.serve import ServeConfig, create_app, open_backend  # noqa: E402


def browsers_folder() -> Path:
    """Where ``playwright install`` puts browsers (``PLAYWRIGHT_BROWSERS_PATH``, else its per-user cache)."""
    env = os.environ.get("PLAYWRIGHT_BROWSERS_PATH")
    if env and env != "0":
        return Path(env)
    return Path.home() / ("Library/Caches" if sys.platform == "darwin" else ".cache") / "ms-playwright"


def system_chromium() -> str | None:
    """A Chromium installed by the system's packages (Debian: ``apt install chromium-headless-shell``), used
    when Playwright's own download is not there."""
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


FOLDER = browsers_folder()
OWN = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") == "0" or any(FOLDER.glob("chromium*"))
pytestmark = pytest.mark.skipif(  # checked before anything starts (Playwright's driver, the session's trained run)
    not OWN and system_chromium() is None,
    reason=f"no Chromium for Playwright (nothing in {FOLDER}, none on PATH); run `python -m playwright install "
    "chromium` (`make test-all` does; it needs network access to its download host) or install the system's "
    "chromium package",
)


@pytest.fixture(scope="module")
def browser():
    try:
        with sync_api.sync_playwright() as p:
            try:
                b = p.chromium.launch(headless=True, executable_path=None if OWN else system_chromium())
            except sync_api.Error as e:
                pytest.skip(
                    "Chromium for Playwright is not installed (run `python -m playwright install chromium`; "
                    f"it needs network access to its download host): {str(e).splitlines()[0]}"
                )
            yield b
            b.close()
    except sync_api.Error as e:  # the driver itself cannot start
        pytest.skip(f"Playwright cannot start here: {str(e).splitlines()[0]}")


@pytest.fixture(scope="module")
def server(digits_run):
    """``deepkit serve`` of the session's digits run on a free loopback port, in a thread of this process."""
    run = digits_run[0]
    with serving(open_backend(run), ServeConfig(max_wait_ms=1)) as url:
        yield url, run


def test_upload_a_digit_and_see_its_class(browser, server):
    url, run = server
    predictor = deepkit.load(run)
    samples = sorted((run / "samples").glob("*_label_*.png"))
    label = lambda p: re.search(r"_label_(\w+)\.png$", p.name).group(1)  # noqa: E731
    right = [p for p in samples if predictor.predict_files([p], top_k=1)[0]["class"] == label(p)]
    assert right, "the trained digits run classifies none of its sample images correctly"
    image = right[0]
    page = browser.new_page()
    try:
        page.goto(url)
        page.wait_for_selector("body[data-ready='image/bars']", timeout=10_000)
        assert "classification" in page.inner_text("#about")
        page.set_input_files("#file", str(image))
        page.wait_for_selector("#result[data-top]", timeout=10_000)
        assert page.get_attribute("#result", "data-top") == label(image)
        assert page.locator("#result .bar").count() >= 1 and page.inner_text("#error") == ""
        page.set_input_files("#file", {"name": "x.png", "mimeType": "image/png", "buffer": b"not an image"})
        page.wait_for_function("document.getElementById('error').textContent.startsWith('422')", timeout=10_000)
    finally:
        page.close()


@contextlib.contextmanager
def serving(backend, config: ServeConfig | None = None):
    """An app for ``backend`` on a free loopback port, in a thread of this process: yields its URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(backend, config)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(10)


def png_file(folder: Path, size: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    path = folder / f"random_{size}.png"
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.slow
def test_the_page_fits_detection_segmentation_text_and_generation(browser, tmp_path):
    """Boxes listed (and drawn) for the scores above the slider, a mask's class shares, typed text's class, a
    streamed continuation: each page widget driven as a person would, against what the API answers."""
    import httpx
    import numpy as np

    from deepkit.serve.backends import TorchBackend
    from test_export import detection_predictor, segmentation_predictor
    from test_serve import tiny_text_classifier

    page = browser.new_page()
    try:
        with serving(TorchBackend(detection_predictor("fcos_small"), "memory")) as url:
            image = png_file(tmp_path, 128, 0)
            api = httpx.post(url + "predict", files={"file": image.read_bytes()}, timeout=60).json()["outputs"]
            want = sum(s >= 0.5 for s in api["scores"][0][: api["count"][0]])
            page.goto(url)
            page.wait_for_selector("body[data-ready='image/boxes']", timeout=10_000)
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#result[data-count]", timeout=30_000)
            assert int(page.get_attribute("#result", "data-count")) == want and want > 0
            assert page.locator("#result li").count() == want
        with serving(TorchBackend(segmentation_predictor("unet_small", [48, 48]), "memory")) as url:
            page.goto(url)
            page.wait_for_selector("body[data-ready='image/mask']", timeout=10_000)
            page.set_input_files("#file", str(png_file(tmp_path, 48, 1)))
            page.wait_for_selector("#result .bar", timeout=30_000)
            shares = page.locator("#result .bar").all_inner_texts()
            assert shares and all("% of the pixels" in t for t in shares)
        text = tiny_text_classifier()
        with serving(TorchBackend(text, "memory")) as url:
            page.goto(url)
            page.wait_for_selector("body[data-ready='text/bars']", timeout=10_000)
            page.fill("#text", "a good film")
            page.click("#send-text")
            page.wait_for_selector("#result[data-top]", timeout=10_000)
            assert page.get_attribute("#result", "data-top") == text.predict(["a good film"], names=True)[0]
        from test_serve import lm_predictor

        with serving(TorchBackend(lm_predictor(), "memory")) as url:
            page.goto(url)
            page.wait_for_selector("body[data-ready='text/stream']", timeout=10_000)
            page.fill("#text", "the ")
            page.click("#send-text")
            page.wait_for_selector("#stream[data-done]", timeout=30_000)
            assert page.inner_text("#stream").startswith("the ") and len(page.inner_text("#stream")) > 4
        assert np.isfinite(want)
    finally:
        page.close()
