"""One `mcp-tee dev` per state directory: an exclusive lock that names its owner and where it serves.

Two runs on one `.mcp-tee` used to share (and stop) one Postgres cluster and interleave one audit
log, which `audit verify` then reported as tampering. The lock is an `flock` on `dev.lock`: the
kernel releases it when the owner dies, however it dies, so a held lock means a live owner and a
cluster left running without one is safe to restart. The file's JSON (pid, URL, issuer directory)
also tells `mcp-tee dev-token` which server is running.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

LOCK_FILE = "dev.lock"
STATE_DIR_NAME = ".mcp-tee"


class StateDirBusy(RuntimeError):
    """Another live `mcp-tee dev` holds the state directory; the message names it and the way out."""


class StateDirLock:
    """Held from before anything in the state directory is touched until the run ends.

    Example:
        lock = StateDirLock(Path(".mcp-tee")); lock.acquire({"url": url}); ...; lock.release()
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, info: dict[str, Any]) -> None:
        """Take the lock and record `info` with our pid, or raise StateDirBusy without changing anything."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = running_owner(self.state_dir) or {}
            raise StateDirBusy(f"another mcp-tee dev (pid {owner.get('pid', '?')}, {owner.get('url', '?')}) uses "
                               f"{self.state_dir}; stop it, or pass --state-dir DIR and --port N for a second "
                               "instance") from None
        self._fd = fd
        self.update(info)

    def update(self, info: dict[str, Any]) -> None:
        """Replace the recorded facts (pid is always ours)."""
        if self._fd is None:
            raise RuntimeError("the state directory lock is not held")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps({**info, "pid": os.getpid()}).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def running_owner(state_dir: Path) -> dict[str, Any] | None:
    """What the live owner of `state_dir` recorded; None when no live process holds it."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: the owner is alive
            raw = os.read(fd, 65536)
            try:
                info = json.loads(raw) if raw else {}
            except ValueError:
                info = {}
            return info if isinstance(info, dict) else {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def find_running_dev(start: Path) -> tuple[dict[str, Any] | None, list[Path]]:
    """The record of a live `mcp-tee dev` whose state directory is `.mcp-tee` in `start` or a parent of it.

    Returns the record (None when there is none) and the directories looked at, for the error message.
    """
    looked = []
    for directory in (start.resolve(), *start.resolve().parents):
        state_dir = directory / STATE_DIR_NAME
        looked.append(state_dir)
        owner = running_owner(state_dir)
        if owner is not None:
            return owner, looked
    return None, looked
