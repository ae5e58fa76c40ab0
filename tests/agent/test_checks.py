"""One rule set, two entry points: every rule of `app.agent.checks` is broken through `AttestedSession` and through
`AttestedChannel.verify_status`, and both refuse, so a rule dropped from either path fails here.

The answers come from `mcp-tee serve` in TEE mode and are tampered with past TLS (`RewritingProxy`). A rule on the
*signed* runtime data is broken with a token the emulator's issuer really signs, so only that one rule fails.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from app.agent import AttestedSession
from app.agent.channel import attest_channel
from app.agent.errors import AgentError, ChannelNotAttested, VerificationFailed
from app.emulator.issuer import MaaIssuer
from app.wire.runtime_data import canonical_json
from app.wire.session_seal import SessionKey
from app.wire.tls_binding import TLS_SPKI_FIELD
from tests.agent.conftest import TeeStack

STATUS_TOOL = "attestation_status"
# Sent as the bearer on both paths: no refusal may repeat it.
CANARY_BEARER = "CANARY-bearer-never-in-a-refusal-000000000000000000000000042"
OTHER_KEY = "A" * 43  # 32 bytes of unpadded base64url, not the server's
Tamper = Callable[[TeeStack, dict], dict]


async def via_session(stack: TeeStack) -> None:
    async with AttestedSession(stack.server.url, trust=stack.trust, bearer_token=CANARY_BEARER):
        pass


AS_SENT = object()


async def via_verify_status(stack: TeeStack, *, status: Any = AS_SENT, nonce: Any = AS_SENT) -> None:
    """FastMCP's Client on an attested channel, as the README shows; `status` or `nonce` replace what is checked."""
    channel = await attest_channel(stack.server.url, stack.trust)
    factory = channel.httpx_client_factory(bearer=CANARY_BEARER)
    transport = StreamableHttpTransport(channel.url, httpx_client_factory=factory)
    sent = secrets.token_urlsafe(32)
    async with Client(transport) as client:
        tools = await client.list_tools()
        received = (await client.call_tool(STATUS_TOOL, {"nonce": sent})).structured_content
    await channel.verify_status(received if status is AS_SENT else status, sent if nonce is AS_SENT else nonce,
                                tools=tools)


ENTRY_POINTS = {"AttestedSession": via_session, "verify_status": via_verify_status}


@pytest.fixture(params=sorted(ENTRY_POINTS))
def entry_point(request) -> Callable[[TeeStack], Any]:
    return ENTRY_POINTS[request.param]


def tampering(proxy, stack: TeeStack, tamper: Tamper) -> None:
    def rewrite(method: str, tool: str | None, result: dict) -> dict:
        if tool != STATUS_TOOL or not isinstance(result.get("structuredContent"), dict):
            return result
        return {**result, "structuredContent": tamper(stack, copy.deepcopy(result["structuredContent"]))}

    proxy.rewrite = rewrite


def failed_check(error: AgentError) -> str:
    """The check that refused; its message repeats no bearer and no token."""
    report = error.report
    assert CANARY_BEARER not in str(error) and CANARY_BEARER not in report.render()
    assert report.first_failure is not None and "eyJ" not in report.first_failure.detail
    return report.first_failure.name


# -- ways to break one rule -------------------------------------------------------------------------------------

def answer(**fields: Any) -> Tamper:
    """Change top-level fields of the answer (unsigned): None removes one."""
    def tamper(stack: TeeStack, status: dict) -> dict:
        status.update(fields)
        return {name: value for name, value in status.items() if value is not None}
    return tamper


def evidence_without(field: str) -> Tamper:
    def tamper(stack: TeeStack, status: dict) -> dict:
        del status["attestation"][field]
        return status
    return tamper


def advertised_runtime(**fields: Any) -> Tamper:
    """Change the runtime data in the answer but not the signed copy in the token."""
    def tamper(stack: TeeStack, status: dict) -> dict:
        status["attestation"]["runtime"].update(fields)
        return status
    return tamper


def signed(runtime: dict[str, Any] | None = None, claims: dict[str, Any] | None = None,
           issuer: MaaIssuer | None = None, signing_key: rsa.RSAPrivateKey | None = None) -> Tamper:
    """A fresh token signed by the emulator's issuer (unless told otherwise) over edited runtime data.

    The answer carries the same runtime data as the token, so everything else still holds.
    """
    def tamper(stack: TeeStack, status: dict) -> dict:
        evidence = status["attestation"]
        edited = {**evidence["runtime"], **(runtime or {})}
        edited = {name: value for name, value in edited.items() if value is not None}
        maa = issuer or stack.emulator.state.issuer
        evidence["runtime"] = edited
        evidence["token"] = maa.mint(canonical_json(edited), claims=claims, signing_key=signing_key)
        return status
    return tamper


def expired(stack: TeeStack, status: dict) -> dict:
    issued = int(time.time()) - 7200
    return signed(claims={"iat": issued, "nbf": issued, "exp": issued + 600})(stack, status)


def another_issuer(stack: TeeStack, status: dict) -> dict:
    # Same measurement, an issuer nobody told the agent to trust.
    return signed(issuer=MaaIssuer("http://127.0.0.1:9", stack.emulator.hostdata))(stack, status)


def another_signing_key(stack: TeeStack, status: dict) -> dict:
    return signed(signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048))(stack, status)


RULES = [
    # (how the answer is broken, the check that must refuse it)
    pytest.param(answer(running_in_tee=False), "tee_mode", id="no TEE"),
    pytest.param(answer(attestation=None), "tee_mode", id="no evidence"),
    pytest.param(evidence_without("token"), "attestation_status", id="no token"),
    pytest.param(evidence_without("runtime"), "attestation_status", id="no runtime data"),
    pytest.param(another_issuer, "trusted_issuer", id="issuer we do not trust"),
    pytest.param(another_signing_key, "signature", id="not signed by the issuer"),
    pytest.param(signed(claims={"x-ms-sevsnpvm-hostdata": "ab" * 32}), "hostdata", id="another deployment"),
    pytest.param(expired, "expired", id="expired token"),
    pytest.param(signed(runtime={"nonce": secrets.token_urlsafe(32)}), "nonce", id="replayed nonce"),
    pytest.param(advertised_runtime(session_pub=SessionKey.generate().public_b64url), "runtime",
                 id="runtime data altered in the answer"),
    pytest.param(signed(claims={"x-ms-sevsnpvm-reportdata": "00" * 64}), "reportdata",
                 id="report data over other runtime data"),
    pytest.param(signed(runtime={"session_pub": None}), "session_pub", id="no session key"),
    pytest.param(signed(runtime={"session_pub": "not-an-x25519-key"}), "session_pub", id="malformed session key"),
    pytest.param(signed(runtime={"tools_digest": "0" * 64}), "tools_digest", id="another tool list"),
    pytest.param(signed(runtime={"audit_pub": None}), "audit_key", id="no audit key bound"),
    pytest.param(answer(audit_public_key=OTHER_KEY), "audit_key", id="audit key swapped"),
    pytest.param(answer(capability_public_key=OTHER_KEY), "capability_root", id="capability key swapped"),
    pytest.param(signed(runtime={"capability_pub": OTHER_KEY}), "capability_root", id="capability key not advertised"),
    pytest.param(signed(runtime={TLS_SPKI_FIELD: "0" * 64}), "tls_channel", id="another TLS key"),
    pytest.param(signed(runtime={TLS_SPKI_FIELD: None}), "tls_channel", id="no TLS key bound"),
]


class TestEachRuleRefusesOnBothPaths:
    async def test_an_untouched_answer_verifies(self, tee_stack, proxy, entry_point):
        tampering(proxy, tee_stack, lambda stack, status: status)
        await entry_point(tee_stack)

    @pytest.mark.parametrize("tamper, check", RULES)
    async def test_a_broken_rule_is_refused(self, tee_stack, proxy, entry_point, tamper, check):
        tampering(proxy, tee_stack, tamper)
        error = ChannelNotAttested if check == "tls_channel" else VerificationFailed
        with pytest.raises(error) as refused:
            await entry_point(tee_stack)
        assert failed_check(refused.value) == check
        # Only a server without TEE evidence is reported as "not attested"; every other failure is a refusal.
        assert refused.value.report.attested is (check != "tee_mode")


class TestWhatOnlyOnePathCanBreak:
    """The session makes its own nonce and reads the tool's answer itself; verify_status takes both from its caller."""

    @pytest.mark.parametrize("status", [None, [], "running_in_tee"])
    async def test_verify_status_refuses_an_answer_that_is_not_an_object(self, tee_stack, status):
        with pytest.raises(VerificationFailed) as refused:
            await via_verify_status(tee_stack, status=status)
        assert failed_check(refused.value) == "attestation_status"

    @pytest.mark.parametrize("nonce", [None, ""])
    async def test_verify_status_refuses_without_the_nonce_it_sent(self, tee_stack, nonce):
        # The verifier skips freshness without a nonce: a replayed answer would pass.
        with pytest.raises(VerificationFailed) as refused:
            await via_verify_status(tee_stack, nonce=nonce)
        assert failed_check(refused.value) == "nonce"

    async def test_the_session_refuses_an_error_answer(self, tee_stack, proxy):
        proxy.rewrite = lambda method, tool, result: (
            {"content": [{"type": "text", "text": "attestation unavailable"}], "isError": True}
            if tool == STATUS_TOOL else result)
        with pytest.raises(VerificationFailed) as refused:
            await via_session(tee_stack)
        assert failed_check(refused.value) == "attestation_status"
        assert "attestation unavailable" in str(refused.value)
