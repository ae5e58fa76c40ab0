"""Verify-then-trust MCP client: check the server's attestation before the first tool call."""

from app.agent.attested_session import AttestedSession
from app.agent.channel import AttestedChannel, attest_channel
from app.agent.errors import AgentError, ChannelNotAttested, NotVerified, VerificationFailed
from app.agent.trust import TrustPolicy

__all__ = ["AgentError", "AttestedChannel", "AttestedSession", "ChannelNotAttested", "NotVerified", "TrustPolicy",
           "VerificationFailed", "attest_channel"]
