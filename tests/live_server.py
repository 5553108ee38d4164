"""A real server on a free local port and a real headless Chromium page, for the web tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

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


FFMPEG = shutil.which("ffmpeg")


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class FfmpegServer:
    """Debian's ffmpeg serving a 10 fps test pattern (or ``clip``, looped) as MPEG-TS over HTTP, one
    client per start; each frame is sent as it is made (``-flush_packets``), not in 32 KB bursts."""

    def __init__(self, port: int, clip: Path | None = None) -> None:
        self.port = port
        self.clip = clip
        self.url = f"http://127.0.0.1:{port}/live.ts"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [FFMPEG, "-loglevel", "error", "-re", *self._input(), "-f", "mpegts", "-flush_packets", "1",
             "-listen", "1", self.url], stdin=subprocess.DEVNULL)
        # A test connection would use up the server's one client: watch the kernel's socket table.
        wait_for(self.listening, 10, f"ffmpeg to listen on port {self.port}")

    def _input(self) -> list[str]:
        if self.clip is None:
            return ["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"]
        return ["-stream_loop", "-1", "-i", str(self.clip), "-c:v", "mpeg2video", "-q:v", "2"]

    def listening(self) -> bool:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
        return any(r.split()[1].endswith(f":{self.port:04X}") and r.split()[3] == "0A" for r in rows)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # in case it was paused
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        """Keep the connection open but send nothing: a camera that froze."""
        os.kill(self.process.pid, signal.SIGSTOP)


@pytest.fixture
def ffmpeg_server():
    """An :class:`FfmpegServer` on a free port (not started); skipped, saying why, without ffmpeg."""
    if FFMPEG is None:
        pytest.skip("ffmpeg is not installed (Debian: apt-get install ffmpeg); it serves the test stream")
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp to see when ffmpeg listens")
    server = FfmpegServer(free_port())
    yield server
    server.kill()
