"""Runs `mcp-tee serve` as a subprocess on a free port and captures everything it prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.devstack.postgres import free_port

STARTUP_TIMEOUT_S = 60.0  # generous: a loaded 2-core machine starts a server slowly


class ServerProcess:
    """A server started through the real CLI entry point.

    Args:
        env: Extra environment (secrets, endpoints) on top of a minimal base.
        log_dir: Where stdout/stderr are written, for canary scans.
        args: Extra CLI arguments after `serve`.
    """

    def __init__(self, env: dict[str, str], *, log_dir: Path, args: list[str] | None = None,
                 command: str = "serve") -> None:
        self.port = free_port()
        # TEE mode serves HTTPS only, with a self-signed key born in the process (clients pin it).
        self.tls = env.get("MCP_TEE_MODE") == "tee" or "--tee" in (args or [])
        self.base_url = f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"
        self.url = f"{self.base_url}/mcp"
        self.log_path = log_dir / f"server-{self.port}.log"
        self._env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **env}
        self._argv = [sys.executable, "-m", "app.cli", command, "--port", str(self.port), *(args or [])]
        self._process: subprocess.Popen | None = None

    def set_env(self, **values: str) -> None:
        self._env.update(values)

    def start(self, *, wait: bool = True) -> "ServerProcess":
        self._log = open(self.log_path, "wb")
        self._process = subprocess.Popen(self._argv, env=self._env, stdout=self._log, stderr=subprocess.STDOUT,
                                         cwd=Path(__file__).resolve().parents[2])
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"server exited with {self._process.returncode}:\n{self.output()[-2000:]}")
            try:
                # Readiness only: no credential travels on this unpinned probe.
                if httpx.get(f"{self.base_url}/healthz", timeout=0.5, verify=False).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not become ready:\n{self.output()[-2000:]}")

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self._process.wait(timeout=timeout)

    @property
    def pid(self) -> int:
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        return self._process.returncode
