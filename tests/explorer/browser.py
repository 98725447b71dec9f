"""Headless Chromium (Debian's chromium and chromium-driver) driven by Selenium, and an
explorer served from a background thread, for the browser tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from contextlib import contextmanager

import pytest

from learningchain.explorer import ChainView, ExplorerApp
from learningchain.network.status_http import StatusServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def need_browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (./scripts/setup)")
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("headless Chromium is not installed: ./scripts/setup installs Debian's chromium and "
                    "chromium-driver when it runs as root (apt-get install chromium chromium-driver)")
    return webdriver


@contextmanager
def chromium(width=1280, height=1000):
    webdriver = need_browser()
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def explorer_server(path, **view_options):
    """An explorer for ``path`` on a free loopback port, in a thread; yields its base URL."""
    loop = asyncio.new_event_loop()
    server = StatusServer(None, port=0, routes=ExplorerApp(ChainView(path, **view_options)).handle)
    started = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(10), "the explorer did not start"
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def screenshot(driver, name: str, tmp_path) -> None:
    """Saved under $LEARNINGCHAIN_SCREENSHOTS (docs/explorer/ when making the docs' pictures), else tmp."""
    where = os.environ.get("LEARNINGCHAIN_SCREENSHOTS") or str(tmp_path)
    os.makedirs(where, exist_ok=True)
    driver.save_screenshot(os.path.join(where, name))
