"""A real server on a free local port and a real headless Chromium page, for the web tests."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time

import pytest


def chromium() -> str:
    """Debian's Chromium (scripts/install.sh installs it); the test is skipped, saying why, without."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("no chromium on this machine (scripts/install.sh installs it): browser test not run")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app, port: int):
    """``app`` served by uvicorn on 127.0.0.1:``port`` for the duration of the block."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def browser_page():
    """A fresh page of headless Chromium driven by Playwright (no network beyond localhost)."""
    from playwright.sync_api import sync_playwright

    executable = chromium()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        try:
            yield browser.new_page()
        finally:
            browser.close()
