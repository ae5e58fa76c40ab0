"""The agent's verification report: one ✓/✗ line per check, the server's hostdata and tools, or JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from app.attestation.verifier import check_label
from app.urls import is_loopback_host

PASS, FAIL = "✓", "✗"
NOT_ATTESTED = "not attested"


@dataclass(frozen=True)
class Check:
    """One verification step.

    Args:
        name: Stable check name (``connect``, ``tee_mode``, ``hostdata``, ``tools_digest``, ...).
        ok: Whether it passed.
        detail: Short, secret-free explanation.
    """

    name: str
    ok: bool
    detail: str = ""


def transport_warnings(url: str) -> list[str]:
    """What the URL itself gives away: plain HTTP to another host is readable by the network and the operator."""
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        return ["WARNING: plain HTTP to a remote server: nothing binds this connection to the TEE, so no bearer "
                "token is sent and the server cannot be verified; use its https:// URL (a TLS-terminating proxy "
                "in front would break the channel binding too)"]
    return []


@dataclass
class VerificationReport:
    """Everything one verification found out; ``verified`` is True only when every check passed.

    Args:
        url: The server's MCP URL.
        checks: The checks in the order they ran; the first failure ends the list.
        attested: False when the server said it runs outside a TEE.
        hostdata: The hostdata the verified token carries (None until the signature verified).
        tools: Tool names from the ``tools/list`` the digest was computed over.
        warnings: Printed before the checks (e.g. a development issuer is trusted).
    """

    url: str
    checks: list[Check] = field(default_factory=list)
    attested: bool = True
    hostdata: str | None = None
    issuer: str | None = None
    tools: list[str] = field(default_factory=list)
    tools_digest: str | None = None
    session_pub: str | None = None
    audit_public_key: str | None = None
    capability_public_key: str | None = None
    tls_spki_sha256: str | None = None
    expires_at: int | None = None
    warnings: list[str] = field(default_factory=list)

    def passed(self, name: str, detail: str = "") -> None:
        self.checks.append(Check(name, True, detail))

    def failed(self, name: str, detail: str) -> None:
        self.checks.append(Check(name, False, detail))

    @property
    def verified(self) -> bool:
        return self.attested and bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((check for check in self.checks if not check.ok), None)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json`` (no secrets: the report never holds any)."""
        return {**asdict(self), "verified": self.verified,
                "result": "verified" if self.verified else NOT_ATTESTED if not self.attested else "refused"}

    def render(self) -> str:
        """Human-readable lines: warnings, one line per check, hostdata, tools and the verdict."""
        lines = [f"mcp-tee agent → {self.url}", *self.warnings]
        lines += [f"{PASS if c.ok else FAIL} {check_label(c.name)}" + (f": {c.detail}" if c.detail else "")
                  for c in self.checks]
        lines.append(f"hostdata: {self.hostdata or '(unverified)'}")
        lines.append(f"tools: {', '.join(self.tools) if self.tools else '(none listed)'}")
        verdict = "VERIFIED" if self.verified else NOT_ATTESTED.upper() if not self.attested else "REFUSED"
        lines.append(f"result: {verdict}")
        return "\n".join(lines)
