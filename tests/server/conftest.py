"""The real server as a subprocess (``enjournal serve``), for tests that need real HTTP.

``live_server`` yields the base URL (``http://127.0.0.1:PORT``) of a server on ``store_url``
(both backends).  Pass ``workers`` indirectly for several uvicorn workers::

    @pytest.mark.parametrize("live_server", [3], indirect=True)

On teardown the server gets SIGTERM and must exit by itself within 10 s, having closed its
store (the lifespan shutdown logs "store closed") and logged no error (graceful shutdown).
uvicorn (>= 0.29) re-raises the captured SIGTERM after a graceful shutdown, so the exit
status is 0 or -SIGTERM.  ``ServerProcess`` is importable for tests outside this folder
(``from tests.server.conftest import ServerProcess``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``python -m enjournal.cli serve`` on a free port; its output goes to ``log``."""

    def __init__(self, database: str, log: Path, *, workers: int = 1, port: int | None = None):
        self.database = database
        self.workers = workers
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> ServerProcess:
        env = {
            **os.environ,
            "ENJOURNAL_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "ENJOURNAL_AUTH": os.environ.get("ENJOURNAL_AUTH", "off"),
        }
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "enjournal.cli",
                    "serve",
                    "--database",
                    self.database,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(self.workers),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # SIGKILL of the group reaches uvicorn's workers
            )
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        healthy_in_a_row = 0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                if httpx.get(f"{self.base}/health", timeout=1).status_code == 200:
                    healthy_in_a_row += 1
                    # With several workers, wait until more than one answered probably.
                    if healthy_in_a_row >= min(self.workers, 3):
                        return
                    continue
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not become healthy in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM; the exit status, or AssertionError if it did not stop in ``timeout`` s."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"the server did not stop within {timeout} s of SIGTERM:\n{self.output()}"
            ) from None

    def kill(self) -> None:
        """SIGKILL the server and its workers (its own process group)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def live_server(request, store_url, tmp_path):
    """The base URL of a real ``enjournal serve`` on ``store_url``; graceful stop checked."""
    workers = getattr(request, "param", None) or 1
    server = ServerProcess(store_url, tmp_path / "server.log", workers=workers).start()
    try:
        yield server.base
    finally:
        status = server.terminate(10)
        # Make sure no worker outlives the test, whatever happened.
        server.kill()
    assert_graceful(server, status)


def assert_graceful(server: ServerProcess, status: int) -> None:
    log = server.log.read_text(errors="replace")
    assert status in (0, -signal.SIGTERM), f"exit status {status} after SIGTERM:\n{log[-4000:]}"
    closed = log.count('"message":"store closed"')
    assert closed >= 1, f"no lifespan shutdown (store closed) in the log:\n{log[-4000:]}"
    errors = [line for line in log.splitlines() if '"level":"error"' in line]
    assert not errors, "the server logged errors:\n" + "\n".join(errors[:5])
