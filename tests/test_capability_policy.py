"""The capability policy loads strictly: any invalid file refuses startup with a named error."""

from __future__ import annotations

import pytest

from app.capability_policy import PolicyError, load_policy, parse_policy
from tests.support.stack import DELETE, POLICY_TEXT, policy_with


class TestPackagedPolicy:
    def test_declares_every_tool_with_its_class_and_upstream(self):
        policy = load_policy()
        assert {name: (t.tool_class, t.upstream, t.confirm, tuple(sorted(t.scopes)))
                for name, t in policy.tools.items()} == {
            "github_search_issues": ("read", "github", False, ("mcp:read",)),
            "query_database": ("read", "postgres", False, ("mcp:read",)),
            "send_notification": ("write", "webhook", True, ("mcp:write",)),
            "attestation_status": ("read", "attestation", False, ("mcp:read",)),
            "provide_session_credentials": ("read", "none", False, ("mcp:read",)),
            "mint_capability": ("read", "none", False, ("mcp:delegate",)),
            "revoke_capability": ("read", "none", False, ("mcp:delegate",)),
        }

    def test_undeclared_tool_has_no_policy(self):
        assert load_policy().tool("debug_dump_env") is None

    def test_loads_from_an_explicit_path(self, tmp_path):
        path = tmp_path / "p.toml"
        path.write_text(POLICY_TEXT)
        assert load_policy(path).source == str(path)


class TestInvalidPolicyRefused:
    @pytest.mark.parametrize(("changes", "named"), [
        ({"tools": {"send_notification": {"confirm": False}}}, "[tools.send_notification].confirm"),
        ({"tools": {"query_database": {"upstream": "mysql"}}}, "[tools.query_database].upstream"),
        ({"tools": {"github_search_issues": {"class": "admin"}}}, "[tools.github_search_issues].class"),
        ({"tools": {"github_search_issues": {"scopes": []}}}, "[tools.github_search_issues].scopes"),
        ({"tools": {"github_search_issues": {"scopes": "mcp:read"}}}, "[tools.github_search_issues].scopes"),
        ({"tools": {"github_search_issues": {"confirm": "no"}}}, "[tools.github_search_issues].confirm"),
        ({"tools": {"github_search_issues": {"confirmed": True}}}, "unknown field 'confirmed'"),
        ({"tools": {"github_search_issues": {"quota": {"per_principal_per_minute": -1}}}},
         "quota.per_principal_per_minute"),
        ({"tools": {"github_search_issues": {"quota": {"burst": True}}}}, "quota.burst"),
        ({"upstreams": {"github": {"max_concurrency": 8.5}}}, "[upstreams.github].max_concurrency"),
        ({"upstreams": {"ftp": {"max_concurrency": 1, "breaker_failures": 1, "breaker_cooldown_s": 1,
                                "timeout_s": 1}}}, "unknown upstream 'ftp'"),
        ({"globals": {}}, "unknown field 'globals'"),
        ({"upstreams": {"postgres": {"max_concurrency": 4, "max_per_principal": 5}}},
         "[upstreams.postgres].max_per_principal"),
        ({"upstreams": {"postgres": {"max_per_principal": 0}}}, "[upstreams.postgres].max_per_principal"),
    ])
    def test_names_the_problem(self, changes, named):
        with pytest.raises(PolicyError) as refused:
            policy_with(changes)
        assert named in str(refused.value)
        assert "test-policy" in str(refused.value)

    def test_toml_syntax_errors_name_the_source(self):
        with pytest.raises(PolicyError, match="TOML syntax.*|test-policy"):
            parse_policy(POLICY_TEXT.replace("per_minute = 1200", "per_minute = 1200 = 3", 1), "test-policy")

    def test_tool_on_an_upstream_without_limits(self):
        with pytest.raises(PolicyError, match=r"\[tools.attestation_status\].upstream.*no \[upstreams.attestation\]"):
            policy_with({"upstreams": {"attestation": DELETE}})

    def test_a_queue_time_must_be_positive(self):
        with pytest.raises(PolicyError, match=r"upstreams.github\]\.queue_s"):
            policy_with({"upstreams": {"github": {"queue_s": 0}}})

    def test_missing_file_names_the_file(self, tmp_path):
        with pytest.raises(PolicyError, match="nope.toml"):
            load_policy(tmp_path / "nope.toml")

    def test_a_principal_share_defaults_to_half_the_slots(self):
        assert policy_with({"upstreams": {"github": {"max_concurrency": 8}}}).upstreams["github"].principal_share == 4
        assert policy_with({"upstreams": {"github": {"max_concurrency": 1}}}).upstreams["github"].principal_share == 1
        tuned = policy_with({"upstreams": {"github": {"max_concurrency": 8, "max_per_principal": 3}}})
        assert tuned.upstreams["github"].principal_share == 3

    def test_valid_variant_still_loads(self):
        assert policy_with({"global": {"per_minute": 10}}).global_quota.per_minute == 10
