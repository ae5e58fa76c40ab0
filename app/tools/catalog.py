"""Every tool this server can offer, as specs; the server and its layers iterate over this tuple."""

from __future__ import annotations

from app.tools import capabilities, database, github, notify, session_credentials, status
from app.tools.spec import ToolSpec

TOOL_SPECS: tuple[ToolSpec, ...] = (github.SPEC, database.SPEC, notify.SPEC, status.SPEC, session_credentials.SPEC,
                                    capabilities.MINT_SPEC, capabilities.REVOKE_SPEC)
