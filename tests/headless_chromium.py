"""A real headless Chromium driven over the Chrome DevTools Protocol, for the dashboard's tests.

Debian's ``chromium`` binary is started with ``--remote-debugging-port=0``; the port it
picked is read from ``DevToolsActivePort`` in its profile folder, a page is opened with
``/json/new`` and driven through its websocket (``websockets``' synchronous client):
``evaluate`` runs JavaScript in the page, ``screenshot`` saves a PNG. Nothing is
downloaded: without the binary, ``find_chromium`` says so.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from websockets.sync.client import ClientConnection, connect

CHROMIUM_NAMES = ("chromium", "chromium-browser")
START_TIMEOUT_SECONDS = 60.0
COMMAND_TIMEOUT_SECONDS = 30.0


def find_chromium() -> str | None:
    """The path of the chromium binary, or None when none is installed."""
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class HeadlessChromium:
    """One headless Chromium process with one page, closed by ``close``."""

    def __init__(self, binary: str, profile: Path, *, width: int = 1400, height: int = 1100) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.log = (profile / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.ids = itertools.count(1)
        self.connections = contextlib.ExitStack()
        try:
            self.port = self._debugging_port(profile / "DevToolsActivePort")
            page = requests.put(f"http://127.0.0.1:{self.port}/json/new?about:blank", timeout=10)
            page.raise_for_status()
            self.page: ClientConnection = self.connections.enter_context(connect(
                page.json()["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=10))
        except BaseException:
            self.close()
            raise

    def _debugging_port(self, active_port_file: Path) -> int:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"chromium exited with {self.process.returncode}")
            lines = active_port_file.read_text().splitlines() if active_port_file.exists() else []
            if lines and lines[0].isdigit():
                return int(lines[0])
            time.sleep(0.1)
        raise AssertionError(f"chromium gave no debugging port in {START_TIMEOUT_SECONDS} s")

    def command(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events on the way are skipped)."""
        message_id = next(self.ids)
        self.page.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + COMMAND_TIMEOUT_SECONDS
        while True:
            answer = json.loads(self.page.recv(timeout=max(0.1, deadline - time.monotonic())))
            if answer.get("id") != message_id:
                continue
            if "error" in answer:
                raise AssertionError(f"{method} failed: {answer['error']}")
            return answer["result"]

    def navigate(self, url: str) -> None:
        """Load ``url`` in the page and wait until it has loaded."""
        self.command("Page.navigate", url=url)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not self.evaluate(loaded):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not load in {START_TIMEOUT_SECONDS} s")
            time.sleep(0.05)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        result = self.command("Runtime.evaluate", expression=expression, returnByValue=True,
                              awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """Save the page (the whole of it, or what the window shows) as a PNG at ``path``."""
        shot = self.command("Page.captureScreenshot", format="png",
                            captureBeyondViewport=full_page)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Close the page's connection and end the browser."""
        self.connections.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def is_ci() -> bool:
    """Whether the tests run in CI, where a missing chromium is a failure, not a skip."""
    return bool(os.environ.get("CI"))
