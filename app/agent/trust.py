"""What the agent trusts: the expected hostdata and the one attestation issuer, from flags or Pulumi outputs.

Threat model: whoever picks the issuer picks which tokens verify. The issuer is
therefore never taken from the server: it is ``https://<maa endpoint>`` from the
user's flags or the stack outputs, or, only when the user says
``--trust-dev-issuer URL``, a loopback http issuer (the local emulator, which
is NOT A TEE). An http issuer without that explicit opt-in is refused, so a
development token can never pass as hardware evidence by accident.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from app.attestation.maa_keys import require_trusted_url
from app.attestation.errors import UntrustedIssuerUrl
from policy.release_policy import maa_authority

HOSTDATA_HEX_LENGTH = 64
DEFAULT_LEEWAY_S = 60
# Keys of `pulumi stack output --json` that the agent reads (see __main__.py).
STACK_URL_KEYS = ("mcp_url", "mcp_urls")
STACK_HOSTDATA_KEY = "expected_hostdata"
STACK_MAA_KEY = "maa_endpoint"
DEV_ISSUER_WARNING = ("WARNING: trusting development issuer {issuer}: its tokens come from the local emulator, "
                      "which is NOT A TEE; never use this against a real deployment")


class TrustPolicyError(ValueError):
    """The trust inputs are missing, malformed or unsafe (the message says which flag to fix)."""


@dataclass(frozen=True)
class TrustPolicy:
    """The verifier's fixed expectations for one server.

    Args:
        expected_hostdata: 64 hex characters, the SHA-256 of the CCE policy we deployed.
        issuer: The MAA issuer URL (``https://host``); loopback http only with ``dev_issuer``.
        dev_issuer: The user explicitly accepted a development (emulator) issuer.
        leeway_s: Clock skew tolerated on ``exp``/``nbf``/``iat``.

    Example:
        >>> policy = TrustPolicy.maa("sharedeus.eus.attest.azure.net", "ab" * 32)
        >>> policy.issuer
        'https://sharedeus.eus.attest.azure.net'
    """

    expected_hostdata: str
    issuer: str
    dev_issuer: bool = False
    leeway_s: int = DEFAULT_LEEWAY_S

    def __post_init__(self) -> None:
        hostdata = self.expected_hostdata.strip().lower()
        if len(hostdata) != HOSTDATA_HEX_LENGTH or any(c not in "0123456789abcdef" for c in hostdata):
            raise TrustPolicyError("--expect-hostdata must be 64 hex characters (the CCE policy's SHA-256)")
        object.__setattr__(self, "expected_hostdata", hostdata)
        try:
            require_trusted_url(self.issuer, "issuer")
        except UntrustedIssuerUrl as exc:
            raise TrustPolicyError(str(exc)) from None
        if urlsplit(self.issuer).scheme != "https" and not self.dev_issuer:
            # Fail closed: an http issuer is the emulator; it needs the explicit, warned opt-in.
            raise TrustPolicyError("an http issuer is a development issuer (NOT A TEE); "
                                   "accept it only with --trust-dev-issuer URL")

    @classmethod
    def maa(cls, maa_endpoint: str, expected_hostdata: str) -> TrustPolicy:
        """Trust the Azure Attestation instance at ``maa_endpoint`` (a host)."""
        try:
            return cls(expected_hostdata, maa_authority(maa_endpoint))
        except ValueError as exc:
            raise TrustPolicyError(f"--maa-endpoint: {exc}") from None

    @classmethod
    def dev(cls, issuer_url: str, expected_hostdata: str) -> TrustPolicy:
        """Trust a development issuer (the emulator); callers must show :data:`DEV_ISSUER_WARNING`."""
        return cls(expected_hostdata, issuer_url.rstrip("/"), dev_issuer=True)

    @property
    def warning(self) -> str | None:
        """The warning to print whenever this policy is used, if any."""
        return DEV_ISSUER_WARNING.format(issuer=self.issuer) if self.dev_issuer else None


def load_stack_outputs(path: Path) -> dict[str, Any]:
    """Read ``pulumi stack output --json`` from ``path``."""
    try:
        outputs = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise TrustPolicyError(f"--stack-outputs: cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(outputs, dict):
        raise TrustPolicyError("--stack-outputs: expected a JSON object of stack outputs")
    return outputs


def stack_url(outputs: Mapping[str, Any]) -> str | None:
    """The server URL from the stack outputs (``mcp_url``, else the first of ``mcp_urls``)."""
    url = outputs.get("mcp_url")
    if isinstance(url, str) and url:
        return url
    urls = outputs.get("mcp_urls")
    if isinstance(urls, list) and urls and isinstance(urls[0], str):
        return urls[0]
    return None


def resolve_trust(*, expect_hostdata: str | None = None, maa_endpoint: str | None = None,
                  trust_dev_issuer: str | None = None, stack_outputs: Mapping[str, Any] | None = None) -> TrustPolicy:
    """Combine flags and stack outputs (flags win) into one :class:`TrustPolicy`.

    ``trust_dev_issuer`` replaces the MAA endpoint: the user asked for the emulator explicitly.
    """
    outputs = stack_outputs or {}
    hostdata = expect_hostdata or outputs.get(STACK_HOSTDATA_KEY)
    if not isinstance(hostdata, str) or not hostdata:
        raise TrustPolicyError("no expected hostdata: pass --expect-hostdata HEX or --stack-outputs stack.json")
    if trust_dev_issuer:
        return TrustPolicy.dev(trust_dev_issuer, hostdata)
    endpoint = maa_endpoint or outputs.get(STACK_MAA_KEY)
    if not isinstance(endpoint, str) or not endpoint:
        raise TrustPolicyError("no trusted issuer: pass --maa-endpoint HOST, --stack-outputs stack.json, "
                               "or (emulator only) --trust-dev-issuer URL")
    return TrustPolicy.maa(endpoint, hostdata)
