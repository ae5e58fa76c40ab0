"""TrustPolicy: the issuer and hostdata come from the user, and an emulator issuer needs the explicit opt-in."""

from __future__ import annotations

import json

import pytest

from app.agent.report import transport_warnings
from app.agent.trust import TrustPolicy, TrustPolicyError, load_stack_outputs, resolve_trust, stack_url

HOSTDATA = "ab" * 32
OUTPUTS = {"mcp_url": "https://mcp.example.net/mcp", "expected_hostdata": HOSTDATA,
           "maa_endpoint": "sharedeus.eus.attest.azure.net"}


class TestIssuerRules:
    def test_maa_endpoint_means_https(self):
        policy = TrustPolicy.maa("sharedeus.eus.attest.azure.net", HOSTDATA.upper())
        assert policy.issuer == "https://sharedeus.eus.attest.azure.net" and policy.warning is None
        assert policy.expected_hostdata == HOSTDATA

    def test_http_issuer_needs_the_dev_opt_in(self):
        with pytest.raises(TrustPolicyError, match="--trust-dev-issuer"):
            TrustPolicy(HOSTDATA, "http://127.0.0.1:8400")
        policy = TrustPolicy.dev("http://127.0.0.1:8400/", HOSTDATA)
        assert policy.dev_issuer and "NOT A TEE" in policy.warning

    @pytest.mark.parametrize("issuer", ["http://attacker.example.net", "https://user:pw@maa.example.net", "ftp://x"])
    def test_untrusted_issuer_urls_are_refused_even_as_dev(self, issuer):
        with pytest.raises(TrustPolicyError):
            TrustPolicy.dev(issuer, HOSTDATA)

    @pytest.mark.parametrize("hostdata", ["", "ab" * 31, "zz" * 32, "ab" * 33])
    def test_hostdata_must_be_64_hex(self, hostdata):
        with pytest.raises(TrustPolicyError, match="64 hex"):
            TrustPolicy.maa("maa.example.net", hostdata)


class TestResolveTrust:
    def test_stack_outputs_alone_suffice(self, tmp_path):
        path = tmp_path / "stack.json"
        path.write_text(json.dumps(OUTPUTS))
        outputs = load_stack_outputs(path)
        assert resolve_trust(stack_outputs=outputs) == TrustPolicy.maa(OUTPUTS["maa_endpoint"], HOSTDATA)
        assert stack_url(outputs) == OUTPUTS["mcp_url"]
        assert stack_url({"mcp_urls": ["https://a/mcp", "https://b/mcp"]}) == "https://a/mcp"

    def test_flags_win_over_stack_outputs(self):
        policy = resolve_trust(expect_hostdata="cd" * 32, maa_endpoint="other.attest.azure.net", stack_outputs=OUTPUTS)
        assert policy == TrustPolicy.maa("other.attest.azure.net", "cd" * 32)
        dev = resolve_trust(trust_dev_issuer="http://127.0.0.1:9", stack_outputs=OUTPUTS)
        assert dev.issuer == "http://127.0.0.1:9" and dev.dev_issuer

    @pytest.mark.parametrize("inputs", [{}, {"expect_hostdata": HOSTDATA}, {"maa_endpoint": "maa.example.net"}])
    def test_missing_inputs_are_refused(self, inputs):
        with pytest.raises(TrustPolicyError):
            resolve_trust(**inputs)

    def test_unreadable_stack_outputs(self, tmp_path):
        (tmp_path / "bad.json").write_text("[1, 2]")
        with pytest.raises(TrustPolicyError):
            load_stack_outputs(tmp_path / "bad.json")
        with pytest.raises(TrustPolicyError):
            load_stack_outputs(tmp_path / "missing.json")


class TestTransportWarning:
    @pytest.mark.parametrize("url", ["http://mcp-tee-prod-0.westeurope.azurecontainer.io:8080/mcp", "http://10.0.0.4/mcp"])
    def test_plain_http_to_a_remote_server_is_called_out(self, url):
        assert "plain HTTP" in transport_warnings(url)[0]

    @pytest.mark.parametrize("url", ["https://mcp.example.com/mcp", "http://127.0.0.1:8080/mcp", "http://localhost/mcp"])
    def test_tls_or_loopback_needs_no_warning(self, url):
        assert transport_warnings(url) == []
