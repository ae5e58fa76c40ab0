"""Pure pieces of the components: the group spec, confcom output parsing, key naming, the release policy."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from components.cce_policy import CcePolicyError, policy_from_output
from components.containers import (APP_COMMAND, APP_PORT, AppEnv, GroupSpec, SpecError, app_container,
                                   container_args, skr_sidecar)
from components.key_release import key_name_for
from policy.release_policy import build_release_policy, encode_release_policy, hostdata_of
from tests.components.harness import TEST_SKR_IMAGE

ENV = AppEnv(maa_endpoint="sharedweu.weu.attest.azure.net", akv_endpoint="kv.vault.azure.net",
             auth_issuer="https://sts.windows.net/t/", auth_jwks_url="https://login.microsoftonline.com/t/discovery/keys",
             auth_audience="https://contoso.onmicrosoft.com/mcp-tee-dev",
             audit_blob_account_url="https://acct.blob.core.windows.net", audit_blob_container="audit")
SPEC = GroupSpec((app_container("acr.azurecr.io/app@sha256:" + "1" * 64, ENV, cpu=1, memory_gb=2),
                  skr_sidecar(TEST_SKR_IMAGE)))


class TestGroupSpec:
    def test_wildcards_are_key_name_and_client_id_only(self) -> None:
        assert SPEC.wildcard_names == ("SKR_KEY_NAME", "IDENTITY_CLIENT_ID", "MCP_AUDIT_BLOB_PREFIX")

    def test_pinned_values_cannot_be_rebound(self) -> None:
        with pytest.raises(SpecError):
            SPEC.bind({"AKV_ENDPOINT": "attacker.vault.azure.net"})

    def test_unbound_wildcard_fails_closed(self) -> None:
        with pytest.raises(SpecError, match="SKR_KEY_NAME"):
            container_args(SPEC.containers[0])

    def test_bound_spec_renders(self) -> None:
        bound = SPEC.bind({"SKR_KEY_NAME": "k", "IDENTITY_CLIENT_ID": "c", "MCP_AUDIT_BLOB_PREFIX": "p"})
        args = container_args(bound.containers[0])
        assert {e.name: e.value for e in args.environment_variables}["SKR_KEY_NAME"] == "k"

    def test_auth_and_audit_sink_settings_are_pinned(self) -> None:
        pinned = {e.name: e.value for e in app_container("i", ENV, cpu=1, memory_gb=1).env if e.pinned}
        assert pinned["MCP_AUTH_AUDIENCE"] == ENV.auth_audience
        assert pinned["MCP_AUDIT_SINK"] == "blob"
        assert pinned["MCP_AUDIT_BLOB_ACCOUNT_URL"] == ENV.audit_blob_account_url
        assert "MCP_AUDIT_LOG" not in pinned, "an unset local audit log is not pinned"

    def test_app_serves_on_8443_with_the_explicit_serve_command(self) -> None:
        app = app_container("i", ENV, cpu=1, memory_gb=1)
        assert app.ports == (APP_PORT,) == (8443,)
        assert app.command == APP_COMMAND == ("mcp-tee", "serve", "--tee", "--require-pinned-env", "--host", "0.0.0.0",
                                               "--port", "8443")


class TestConfcomOutput:
    def test_last_line_is_the_policy(self) -> None:
        policy = base64.b64encode(b"package policy\n").decode()
        assert policy_from_output(f"WARNING: something\n{policy}\n") == policy

    @pytest.mark.parametrize("stdout", ["", "\n\n", "not base64 at all!"])
    def test_no_policy_fails_closed(self, stdout: str) -> None:
        with pytest.raises(CcePolicyError):
            policy_from_output(stdout)


class TestKeyNaming:
    def test_name_changes_with_hostdata_and_with_authority(self) -> None:
        a, b = "a" * 64, "b" * 64
        base = encode_release_policy(build_release_policy("maa.one.example", a))
        other_host = encode_release_policy(build_release_policy("maa.one.example", b))
        other_maa = encode_release_policy(build_release_policy("maa.two.example", a))
        names = {key_name_for(a, base), key_name_for(b, other_host), key_name_for(a, other_maa),
                 key_name_for(a, base, rotation="2")}
        assert len(names) == 4


class TestReleasePolicy:
    def test_hostdata_is_sha256_of_decoded_policy(self) -> None:
        policy = base64.b64encode(b"rego").decode()
        assert hostdata_of(policy) == hashlib.sha256(b"rego").hexdigest()

    def test_encoding_is_unpadded_base64url_of_the_policy(self) -> None:
        policy = build_release_policy("maa.example", "c" * 64)
        data = encode_release_policy(policy)
        assert "=" not in data and "+" not in data and "/" not in data
        assert json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))) == policy

    def test_bad_hostdata_is_refused(self) -> None:
        with pytest.raises(ValueError):
            build_release_policy("maa.example", "not-hex")
