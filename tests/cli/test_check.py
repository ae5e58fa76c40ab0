"""`mcp-tee check`: configuration, capability policy and every upstream, without serving; no secret in the output."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from app.cli import main
from tests.support.canaries import CANARY_WEBHOOK_PATH, assert_no_canary


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "check", "--timeout", "2", *args],
                          env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60)


class TestCheck:
    def test_reachable_upstreams_pass(self, baseline_env):
        result = check(baseline_env, "--json")
        verdict = json.loads(result.stdout)
        assert result.returncode == 0 and verdict["ok"], result.stdout
        names = {finding["check"] for finding in verdict["checks"]}
        assert {"configuration", "capability policy", "upstream github", "upstream postgres",
                "upstream webhook"} <= names
        assert_no_canary([result.stdout, result.stderr], "mcp-tee check")

    def test_an_unreachable_upstream_is_named(self, baseline_env):
        from app.devstack.postgres import free_port

        dead = baseline_env["DB_CONNECTION_STRING"].rsplit(":", 1)[0].rsplit("@", 1)[0] + \
            f"@127.0.0.1:{free_port()}/mcp_demo"
        result = check({**baseline_env, "DB_CONNECTION_STRING": dead})
        assert result.returncode == 1
        assert "✗ upstream postgres: unreachable" in result.stdout and "✓ upstream github" in result.stdout
        assert_no_canary([result.stdout, result.stderr], "mcp-tee check")

    def test_a_driver_error_quoting_part_of_the_password_is_not_printed(self, baseline_env):
        fragment = "PwFragmentCanary%zz"  # psycopg quotes an invalid percent-escape from the DSN verbatim
        result = check({**baseline_env, "DB_CONNECTION_STRING": f"postgresql://reader:{fragment}@127.0.0.1:1/x"})
        assert result.returncode == 1 and "✗ upstream postgres: unreachable: ProgrammingError" in result.stdout
        assert "PwFragmentCanary" not in result.stdout + result.stderr

    @pytest.mark.parametrize("authority", ["127.0.0.1:{port}", "127.0.0.1:not-a-port-{port}"],
                             ids=["refused", "unparsable"])
    def test_an_unreachable_webhook_is_named_without_its_secret_path(self, baseline_env, authority):
        with socket.socket() as refusing:  # bound, never listening: nobody else can take the port meanwhile
            refusing.bind(("127.0.0.1", 0))
            dead = f"http://{authority.format(port=refusing.getsockname()[1])}{CANARY_WEBHOOK_PATH}"
            result = check({**baseline_env, "WEBHOOK_URL": dead})
        assert result.returncode == 1 and "✗ upstream webhook: unreachable" in result.stdout, result.stdout
        assert_no_canary([result.stdout, result.stderr], "mcp-tee check")

    def test_an_invalid_policy_is_named_without_serving(self, tmp_path, monkeypatch, capsys):
        policy = tmp_path / "capabilities.toml"
        policy.write_text('[tools.send_notification]\nclass = "write"\n')
        monkeypatch.setenv("MCP_CAPABILITY_POLICY", str(policy))
        assert main(["check"]) == 1
        assert "✗ capability policy" in capsys.readouterr().out

    def test_a_refused_bind_is_a_configuration_error(self, monkeypatch, capsys):
        monkeypatch.delenv("MCP_AUTH_ISSUER", raising=False)
        assert main(["check", "--host", "0.0.0.0"]) == 2
        assert "refusing to listen" in capsys.readouterr().out
