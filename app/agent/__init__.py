"""Verify-then-trust MCP client: check the server's attestation before the first tool call."""

from app.agent.attested_session import AttestedSession
from app.agent.errors import AgentError, NotVerified, VerificationFailed
from app.agent.trust import TrustPolicy

__all__ = ["AgentError", "AttestedSession", "NotVerified", "TrustPolicy", "VerificationFailed"]
