"""TEE mode only: serves the pre-auth attestation route and advertises the attested channel in MCP."""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP
from fastmcp.server.extensions import ServerExtension

from app.attestation.evidence import TeeAttestation
from app.config import Settings
from app.server.attestation_route import PreAuthAttestationRoute, RouteLimits
from app.wire.runtime_data import tools_digest
from app.wire.tls_binding import (
    ATTESTATION_ROUTE,
    BINDING_VERSION,
    CHANNEL_EXTENSION,
    CHANNEL_META_KEY,
    TLS_SPKI_FIELD,
)


class AttestedChannelExtension(ServerExtension):
    """``capabilities.extensions["dev.mcp-tee/attested-channel"]`` on 2026-07-28 (``server/discover``).

    Handshake-era connections lose ``extensions`` in the SDK, so the server repeats the same settings
    under ``capabilities.experimental`` there.

    Args:
        issuer: The MAA issuer whose keys sign this server's tokens (informational: clients trust their own).
    """

    identifier = CHANNEL_EXTENSION

    def __init__(self, issuer: str) -> None:
        self._issuer = issuer

    def settings(self) -> dict[str, Any]:
        return {"route": ATTESTATION_ROUTE, "issuer": self._issuer, "binding": BINDING_VERSION,
                "runtime_field": TLS_SPKI_FIELD, "channel_meta_key": CHANNEL_META_KEY}


def serve_attested_channel(mcp: FastMCP, attestation: TeeAttestation, settings: Settings) -> None:
    """Add ``GET /.well-known/mcp-attestation`` and the ``dev.mcp-tee/attested-channel`` capability to ``mcp``."""

    async def attest(nonce: str) -> dict:
        # Every registered tool: the route serves no principal, so it attests the full set.
        tools = [tool.to_mcp_tool() for tool in await mcp.list_tools(run_middleware=False)]
        return await attestation.public_evidence(nonce=nonce, tools_digest=tools_digest(tools))

    limits = RouteLimits(settings.attestation_per_second, settings.attestation_per_source_per_minute)
    mcp.custom_route(ATTESTATION_ROUTE, methods=["GET"])(PreAuthAttestationRoute(attest, limits).handle)
    extension = AttestedChannelExtension(attestation.issuer)
    mcp.add_extension(extension)
    # The SDK strips `extensions` on handshake-era (2025-11-25) connections; `experimental` survives there.
    mcp.experimental_capabilities[CHANNEL_EXTENSION] = extension.settings()
