"""The capability policy loads strictly: any invalid file refuses startup with a named error."""

from __future__ import annotations

import pytest

from app.capabilities.policy import PolicyError, load_policy, parse_policy
from tests.capabilities.helpers import POLICY_TEXT, policy_replacing


class TestPackagedPolicy:
    def test_declares_the_five_tools_with_their_classes_and_upstreams(self):
        policy = load_policy()
        assert {name: (t.tool_class, t.upstream, t.confirm, tuple(sorted(t.scopes)))
                for name, t in policy.tools.items()} == {
            "github_search_issues": ("read", "github", False, ("mcp:read",)),
            "query_database": ("read", "postgres", False, ("mcp:read",)),
            "send_notification": ("write", "webhook", True, ("mcp:write",)),
            "attestation_status": ("read", "attestation", False, ("mcp:read",)),
            "provide_session_credentials": ("read", "none", False, ("mcp:read",)),
        }

    def test_undeclared_tool_has_no_policy(self):
        assert load_policy().tool("debug_dump_env") is None

    def test_loads_from_an_explicit_path(self, tmp_path):
        path = tmp_path / "p.toml"
        path.write_text(POLICY_TEXT)
        assert load_policy(path).source == str(path)


class TestInvalidPolicyRefused:
    @pytest.mark.parametrize(("old", "new", "named"), [
        ('class = "write"\nscopes = ["mcp:write"]\nconfirm = true',
         'class = "write"\nscopes = ["mcp:write"]\nconfirm = false', "[tools.send_notification].confirm"),
        ('upstream = "postgres"', 'upstream = "mysql"', "[tools.query_database].upstream"),
        ('class = "read"', 'class = "admin"', "[tools.github_search_issues].class"),
        ('scopes = ["mcp:read"]', 'scopes = []', "[tools.github_search_issues].scopes"),
        ('scopes = ["mcp:read"]', 'scopes = "mcp:read"', "[tools.github_search_issues].scopes"),
        ('confirm = false', 'confirm = "no"', "[tools.github_search_issues].confirm"),
        ('confirm = false', 'confirm = false\nconfirmed = true', "unknown field 'confirmed'"),
        ("per_principal_per_minute = 60", "per_principal_per_minute = -1", "quota.per_principal_per_minute"),
        ("burst = 10 }", "burst = true }", "quota.burst"),
        ("max_concurrency = 8", "max_concurrency = 8.5", "[upstreams.github].max_concurrency"),
        ("[upstreams.webhook]", "[upstreams.ftp]", "unknown upstream 'ftp'"),
        ("[global]", "[globals]", "unknown field 'globals'"),
        ("per_minute = 1200", "per_minute = 1200 = 3", "TOML syntax"),
    ])
    def test_names_the_problem(self, old, new, named):
        with pytest.raises(PolicyError) as refused:
            policy_replacing(old, new)
        assert named in str(refused.value)
        assert "test-policy" in str(refused.value)

    def test_tool_on_an_upstream_without_limits(self):
        text = POLICY_TEXT.replace("[upstreams.attestation]\nmax_concurrency = 2\nbreaker_failures = 3\n"
                                   "breaker_cooldown_s = 30\ntimeout_s = 20\nqueue_s = 1\n", "")
        with pytest.raises(PolicyError, match=r"\[tools.attestation_status\].upstream.*no \[upstreams.attestation\]"):
            parse_policy(text, "test-policy")

    def test_a_queue_time_must_be_positive(self):
        with pytest.raises(PolicyError, match=r"upstreams.github\]\.queue_s"):
            parse_policy(POLICY_TEXT.replace("queue_s = 2 ", "queue_s = 0 ", 1), "test-policy")

    def test_missing_file_names_the_file(self, tmp_path):
        with pytest.raises(PolicyError, match="nope.toml"):
            load_policy(tmp_path / "nope.toml")

    def test_valid_variant_still_loads(self):
        assert policy_replacing("per_minute = 1200", "per_minute = 10").global_quota.per_minute == 10
