"""`mcp-tee agent URL`: one ✓/✗ line per check, exit 0 only when verified, `--json`, tokens from stdin only."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from app.cli import agent as cli
from tests.agent.conftest import CANARY_USER_TOKEN


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mcp-tee")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["agent", *argv])
    return args.func(args)


def trusted(stack) -> list[str]:
    return [stack.server.url, "--expect-hostdata", stack.emulator.hostdata, "--trust-dev-issuer", stack.emulator.issuer]


class TestReport:
    def test_verified_server_exits_0(self, tee_stack, capsys):
        assert run(*trusted(tee_stack)) == 0
        out = capsys.readouterr().out
        assert "WARNING: trusting development issuer" in out and "✗" not in out
        for line in ("✓ hostdata", "✓ nonce", "✓ session_pub", "✓ tools_digest", "result: VERIFIED",
                     f"hostdata: {tee_stack.emulator.hostdata}"):
            assert line in out
        assert "github_search_issues" in out.split("tools: ", 1)[1]

    def test_json_output(self, tee_stack, capsys):
        assert run(*trusted(tee_stack), "--json") == 0
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert report["verified"] is True and report["hostdata"] == tee_stack.emulator.hostdata
        assert "NOT A TEE" in captured.err

    def test_wrong_hostdata_exits_1(self, tee_stack, capsys):
        assert run(tee_stack.server.url, "--expect-hostdata", "00" * 32, "--trust-dev-issuer",
                   tee_stack.emulator.issuer) == 1
        out = capsys.readouterr().out
        assert "✗ hostdata" in out and "result: REFUSED" in out

    def test_not_attested_server_exits_1(self, plain_server, tee_stack, capsys):
        assert run(plain_server.url, "--expect-hostdata", "00" * 32, "--trust-dev-issuer",
                   tee_stack.emulator.issuer) == 1
        out = capsys.readouterr().out
        assert "✗ tee_mode: not attested" in out and "result: NOT ATTESTED" in out

    def test_stack_outputs_without_dev_opt_in_refuse_the_emulator(self, tee_stack, tmp_path, capsys):
        stack = tmp_path / "stack.json"
        stack.write_text(json.dumps({"mcp_url": tee_stack.server.url, "maa_endpoint": tee_stack.emulator.maa_endpoint,
                                     "expected_hostdata": tee_stack.emulator.hostdata}))
        assert run("--stack-outputs", str(stack)) == 1
        assert "✗ trusted_issuer" in capsys.readouterr().out
        assert run("--stack-outputs", str(stack), "--trust-dev-issuer", tee_stack.emulator.issuer) == 0

    def test_missing_trust_inputs_exit_2(self, tee_stack, capsys):
        assert run(tee_stack.server.url) == 2
        assert "--expect-hostdata" in capsys.readouterr().err


class TestGithubTokenStdin:
    def test_user_token_is_sealed_sent_and_used(self, tee_stack, github_standin, monkeypatch, capsys):
        monkeypatch.setattr("sys.stdin", io.StringIO(CANARY_USER_TOKEN + "\n"))
        assert run(*trusted(tee_stack), "--github-token-stdin", "--check-isolation", "--call", "github_search_issues",
                   "--arguments", '{"query": "login", "max_results": 1}') == 0
        captured = capsys.readouterr()
        for line in ("✓ session_credentials: github_token", "✓ isolation", "✓ call github_search_issues"):
            assert line in captured.out
        assert github_standin.requests[-1]["token"] == CANARY_USER_TOKEN
        assert CANARY_USER_TOKEN not in captured.out + captured.err

    def test_token_is_never_sent_to_an_unverified_server(self, tee_stack, github_standin, monkeypatch, capsys):
        monkeypatch.setattr("sys.stdin", io.StringIO(CANARY_USER_TOKEN))
        assert run(tee_stack.server.url, "--expect-hostdata", "00" * 32, "--trust-dev-issuer",
                   tee_stack.emulator.issuer, "--github-token-stdin", "--call", "github_search_issues") == 1
        assert github_standin.requests == []  # neither the credentials nor the call left the agent
        assert "✓ session_credentials" not in capsys.readouterr().out

    @pytest.mark.parametrize("bad", ["not json", "[1]"])
    def test_bad_call_arguments_exit_2(self, tee_stack, bad, capsys):
        assert run(*trusted(tee_stack), "--call", "github_search_issues", "--arguments", bad) == 2
