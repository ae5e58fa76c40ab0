"""`mcp-tee call`: a write succeeds end to end only when the user types yes at the terminal prompt."""

from __future__ import annotations

import io
import subprocess
import sys
from types import SimpleNamespace

import pytest

from app.cli.call import _ask_the_user


def call(url: str, answer: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "call", "send_notification", "--url", url, *args],
                          input=answer, capture_output=True, text=True, timeout=90)


class TestTerminalConfirmation:
    def test_yes_sends_exactly_what_was_shown(self, server, webhook_sink):
        result = call(server.url, "y\n", "--arg", "message=deploy 7 done", "--arg", "channel=ops")
        assert result.returncode == 0, result.stderr
        assert "Allow send_notification to do exactly this?" in result.stderr and "deploy 7 done" in result.stderr
        assert [post["payload"]["text"] for post in webhook_sink.posts] == ["[normal] deploy 7 done"]

    def test_no_sends_nothing(self, server, webhook_sink):
        result = call(server.url, "n\n", "--arg", "message=never")
        assert result.returncode == 1 and "not done" in result.stderr and "declined" in result.stderr
        assert webhook_sink.posts == []

    @pytest.mark.parametrize("typed, action", [("y\n", "accept"), ("YES\n", "accept"), ("n\n", "decline"),
                                               ("sure\n", "decline"), ("\n", "decline"), ("", "cancel")])
    async def test_only_an_explicit_yes_accepts(self, typed, action, monkeypatch, capsys):
        monkeypatch.setattr(sys, "stdin", io.StringIO(typed))
        answer = await _ask_the_user(None, SimpleNamespace(message="Allow send_notification?"))
        assert answer.action == action and (answer.content == {"value": True}) == (action == "accept")
        assert "Allow send_notification?" in capsys.readouterr().err

    def test_a_server_that_wants_a_token_says_so(self, tmp_path):
        from app.devstack.threaded import ThreadedServer
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def unauthorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)

        with ThreadedServer(Starlette(routes=[Route("/mcp", unauthorized, methods=["GET", "POST", "DELETE"])])) as s:
            result = call(f"{s.url}/mcp", "", "--arg", "message=x")
        assert result.returncode == 1
        assert "401: the server wants a bearer token; pass --auth-token-env VAR" in result.stderr
        assert "Traceback" not in result.stderr
