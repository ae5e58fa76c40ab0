"""Settings are validated in one place and refuse unsafe combinations with a clear message."""

from __future__ import annotations

import pytest

from app.config import TEE_PINNED_ENV, ConfigError, load_settings
from app.urls import is_loopback_host


class TestGitHubApiUrl:
    @pytest.mark.parametrize("url", ["https://api.github.com", "https://ghe.example.com/api/v3",
                                     "http://127.0.0.1:8000", "http://localhost:9"])
    def test_https_or_loopback_http_is_accepted(self, url):
        assert load_settings({"GITHUB_API_URL": url}).github_api_url == url.rstrip("/")

    @pytest.mark.parametrize("url", ["http://api.github.com", "ftp://api.github.com", "api.github.com"])
    def test_the_token_never_travels_in_clear_to_another_host(self, url):
        with pytest.raises(ConfigError, match="GITHUB_API_URL"):
            load_settings({"GITHUB_API_URL": url})


class TestModesAndTransports:
    def test_defaults_are_safe(self):
        settings = load_settings({})
        assert (settings.host, settings.port, settings.mode, settings.auth) == ("127.0.0.1", 8080, "env", None)

    def test_stdio_needs_an_audit_file(self):
        with pytest.raises(ConfigError, match="MCP_AUDIT_LOG"):
            load_settings({}, transport="stdio")
        assert load_settings({"MCP_AUDIT_LOG": "/tmp/a.jsonl"}, transport="stdio").transport == "stdio"

    def test_stdio_refuses_bearer_auth_it_could_never_carry(self):
        with pytest.raises(ConfigError, match="unset MCP_AUTH_ISSUER"):
            load_settings({"MCP_AUDIT_LOG": "/tmp/a.jsonl", "MCP_AUTH_ISSUER": "dev"}, transport="stdio")

    @pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("10.0.0.1", False)])
    def test_loopback_detection(self, host, loopback):
        assert is_loopback_host(host) is loopback


DEPLOYED_ENV = {
    "MCP_TEE_MODE": "tee", "SKR_ENDPOINT": "http://localhost:9000", "MAA_ENDPOINT": "sharedweu.weu.attest.azure.net",
    "AKV_ENDPOINT": "kv.vault.azure.net", "SKR_KEY_NAME": "mcp-skr-abc", "IDENTITY_CLIENT_ID": "client",
    "MCP_AUTH_ISSUER": "https://sts.windows.net/tenant/",
    "MCP_AUTH_JWKS_URL": "https://login.microsoftonline.com/tenant/discovery/keys",
    "MCP_AUTH_AUDIENCE": "https://contoso.onmicrosoft.com/mcp-tee-prod", "MCP_AUDIT_SINK": "blob",
    "MCP_AUDIT_BLOB_ACCOUNT_URL": "https://acct.blob.core.windows.net", "MCP_AUDIT_BLOB_CONTAINER": "audit",
    "MCP_AUDIT_BLOB_PREFIX": "mcp-tee-prod-0",
}


class TestDroppedPinnedEnv:
    """Issue 12: confcom's env rules are `required: false`, so the host may start a group without any of them."""

    def test_the_fixture_pins_every_variable(self):
        assert set(DEPLOYED_ENV) == TEE_PINNED_ENV

    def test_a_complete_deployment_env_loads(self):
        settings = load_settings(DEPLOYED_ENV, tee=True, require_pinned_env=True)
        assert settings.tee_mode and settings.auth is not None

    @pytest.mark.parametrize("dropped", sorted(TEE_PINNED_ENV))
    def test_each_dropped_variable_is_refused_by_name(self, dropped):
        env = {name: value for name, value in DEPLOYED_ENV.items() if name != dropped}
        with pytest.raises(ConfigError, match=f"pins {dropped} but the environment lacks it"):
            load_settings(env, tee=True, require_pinned_env=True)

    def test_an_emptied_variable_counts_as_dropped(self):
        with pytest.raises(ConfigError, match="MCP_AUDIT_SINK"):
            load_settings({**DEPLOYED_ENV, "MCP_AUDIT_SINK": ""}, tee=True, require_pinned_env=True)

    def test_the_check_belongs_to_tee_deployments(self):
        with pytest.raises(ConfigError, match="add --tee"):
            load_settings({k: v for k, v in DEPLOYED_ENV.items() if k != "MCP_TEE_MODE"}, require_pinned_env=True)

    def test_local_tee_runs_without_the_flag_are_unaffected(self):
        assert load_settings({"MCP_TEE_MODE": "tee"}).tee_mode


class TestCapabilityRootDir:
    def test_dev_root_dir_is_read(self):
        assert load_settings({"MCP_CAPABILITY_ROOT_DIR": "/tmp/x"}).capability_root_dir == "/tmp/x"

    def test_refused_in_tee_mode(self):
        with pytest.raises(ConfigError, match="MCP_CAPABILITY_ROOT_DIR"):
            load_settings({"MCP_TEE_MODE": "tee", "MCP_CAPABILITY_ROOT_DIR": "/tmp/x"})


class TestAuditSink:
    BLOB = {"MCP_AUDIT_SINK": "blob", "MCP_AUDIT_BLOB_ACCOUNT_URL": "https://acct.blob.core.windows.net/",
            "MCP_AUDIT_BLOB_CONTAINER": "audit", "IDENTITY_CLIENT_ID": "00000000-0000-0000-0000-0000000000a1"}

    def test_the_file_sink_is_the_default(self):
        assert load_settings({}).audit_blob is None

    def test_the_blob_sink_takes_the_managed_identity(self):
        blob = load_settings(self.BLOB).audit_blob
        assert (blob.account_url, blob.container, blob.prefix) == ("https://acct.blob.core.windows.net", "audit",
                                                                    "mcp-tee")
        assert blob.identity_client_id == self.BLOB["IDENTITY_CLIENT_ID"] and blob.buffer_records == 10_000

    @pytest.mark.parametrize("missing", ["MCP_AUDIT_BLOB_ACCOUNT_URL", "MCP_AUDIT_BLOB_CONTAINER", "IDENTITY_CLIENT_ID"])
    def test_a_dropped_variable_stops_start_up(self, missing):
        env = {name: value for name, value in self.BLOB.items() if name != missing}
        with pytest.raises(ConfigError, match=missing):
            load_settings(env)

    @pytest.mark.parametrize("name, value", [
        ("MCP_AUDIT_SINK", "syslog"), ("MCP_AUDIT_BUFFER_RECORDS", "0"),
        ("MCP_AUDIT_BLOB_ACCOUNT_URL", "http://acct.blob.core.windows.net"),
        ("MCP_AUDIT_BLOB_ACCOUNT_URL", "https://acct.blob.core.windows.net/?sv=2024&sig=SasCanary"),  # logged at start
        ("MCP_AUDIT_BLOB_ACCOUNT_URL", "https://acct.blob.core.windows.net/#sig=SasCanary"),
        ("MCP_AUDIT_BLOB_ACCOUNT_URL", "https://acct:KeyCanary@acct.blob.core.windows.net"),
    ])
    def test_bad_values_are_named(self, name, value):
        with pytest.raises(ConfigError, match=name):
            load_settings({**self.BLOB, name: value})

    def test_stdio_is_fine_when_audit_goes_to_the_store(self):
        assert load_settings(self.BLOB, transport="stdio").transport == "stdio"


class TestTelemetrySettings:
    def test_off_by_default_and_refused_settings_stop_start_up(self):
        assert not load_settings({}).telemetry.enabled
        with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
            load_settings({"OTEL_TRACES_EXPORTER": "console"})


class TestRequestBodyTimeout:
    """`MCP_REQUEST_BODY_TIMEOUT_S` bounds how long a request body may trickle (app/server/http_limits.py)."""

    def test_the_default_is_30_seconds_and_a_value_is_taken(self):
        assert load_settings({}).request_body_timeout_s == 30.0
        assert load_settings({"MCP_REQUEST_BODY_TIMEOUT_S": "2.5"}).request_body_timeout_s == 2.5

    @pytest.mark.parametrize("value", ["0", "-5", "30s", "nan", "inf"])
    def test_bad_values_stop_start_up_naming_the_variable(self, value):
        with pytest.raises(ConfigError, match="MCP_REQUEST_BODY_TIMEOUT_S must be a (positive finite )?number"):
            load_settings({"MCP_REQUEST_BODY_TIMEOUT_S": value})
