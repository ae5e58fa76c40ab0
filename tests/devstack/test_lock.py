"""One `mcp-tee dev` per state directory: the lock names its live owner and frees itself when the owner dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from app.devstack.lock import StateDirBusy, StateDirLock, find_running_dev, running_owner
from app.devstack.postgres import PostgresUnavailable, _runuser


class TestStateDirLock:
    def test_a_second_owner_is_refused_with_the_pid_and_the_way_out(self, tmp_path):
        first = StateDirLock(tmp_path)
        first.acquire({"url": "http://127.0.0.1:8080/mcp"})
        try:
            with pytest.raises(StateDirBusy) as refused:
                StateDirLock(tmp_path).acquire({"url": "http://127.0.0.1:8081/mcp"})
            assert f"pid {os.getpid()}" in str(refused.value) and "--state-dir" in str(refused.value)
            assert running_owner(tmp_path)["url"] == "http://127.0.0.1:8080/mcp"  # untouched by the refusal
        finally:
            first.release()
        assert running_owner(tmp_path) is None

    def test_the_lock_of_a_killed_owner_is_free(self, tmp_path):
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; from pathlib import Path; from app.devstack.lock import "
             "StateDirLock; StateDirLock(Path(sys.argv[1])).acquire({'url': 'x'}); print('held', flush=True); "
             "time.sleep(60)", str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "held"
        assert running_owner(tmp_path)["pid"] == holder.pid
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert running_owner(tmp_path) is None
        StateDirLock(tmp_path).acquire({"url": "y"})

    def test_a_running_dev_is_found_from_a_subdirectory(self, tmp_path):
        lock = StateDirLock(tmp_path / ".mcp-tee")
        lock.acquire({"url": "http://127.0.0.1:9999/mcp"})
        try:
            (tmp_path / "src" / "deep").mkdir(parents=True)
            owner, _ = find_running_dev(tmp_path / "src" / "deep")
            assert owner["url"] == "http://127.0.0.1:9999/mcp"
        finally:
            lock.release()


class TestRootWithoutRunuser:
    def test_a_missing_runuser_is_named_not_a_traceback(self, monkeypatch):
        monkeypatch.setattr("app.devstack.postgres.shutil.which", lambda name: None)
        monkeypatch.setattr("app.devstack.postgres.RUNUSER_PATHS", ("/nonexistent/runuser",))
        with pytest.raises(PostgresUnavailable, match="runuser"):
            _runuser()
