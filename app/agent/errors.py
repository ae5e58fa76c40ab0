"""Named refusals of the verify-then-trust agent; none of their messages ever carries a credential."""

from __future__ import annotations

from app.agent.report import VerificationReport


class AgentError(Exception):
    """Base of every refusal raised by :class:`app.agent.AttestedSession`."""


class NotVerified(AgentError):
    """A tool call or credential hand-off was attempted before verification succeeded."""


class VerificationFailed(AgentError):
    """Verification ran and a check failed (or the server is not attested).

    Args:
        report: The full report; ``report.first_failure`` names the check.
    """

    def __init__(self, report: VerificationReport) -> None:
        failure = report.first_failure
        super().__init__(f"{failure.name}: {failure.detail}" if failure else "verification failed")
        self.report = report


class ToolsChanged(AgentError):
    """``tools/list`` no longer matches the tool list the attestation bound (tool poisoning / rug pull)."""


class ToolNotAttested(AgentError):
    """The tool is not in the attested tool list."""


class CredentialRefused(AgentError):
    """The server refused the sealed session credentials (its reason is in the message)."""


class ChannelNotAttested(AgentError):
    """The connection is not bound to the attested TLS key.

    Found on the pre-auth route or in a handshake, nothing (no token, no tool call) was sent on it; found in an
    ``attestation_status`` answer (it binds another key than the pinned one), nothing more is sent or trusted.

    Args:
        message: What did not match.
        report: The checks that ran, ending in the ✗ ``tls_channel`` line, when there is one.
    """

    def __init__(self, message: str, report: VerificationReport | None = None) -> None:
        super().__init__(message)
        self.report = report
