"""`mcp-tee check`: configuration, capability policy and every upstream, without serving; no secret in the output."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.canaries import assert_no_canary


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

    def test_an_invalid_policy_is_named_without_serving(self, tmp_path):
        policy = tmp_path / "capabilities.toml"
        policy.write_text('[tools.send_notification]\nclass = "write"\n')
        result = check({"MCP_CAPABILITY_POLICY": str(policy)})
        assert result.returncode == 1 and "✗ capability policy" in result.stdout

    def test_a_refused_bind_is_a_configuration_error(self):
        result = check({}, "--host", "0.0.0.0")
        assert result.returncode == 2 and "refusing to listen" in result.stdout
