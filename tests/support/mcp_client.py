"""The official MCP client over streamable HTTP, with a scripted answer to confirmation prompts."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator

import httpx2
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from app.agent.pinning import ChannelPin


class ScriptedUser:
    """Answers elicitation requests the way a test says: accept, decline, cancel or no."""

    def __init__(self, action: str = "accept", value: bool = True) -> None:
        self.action = action
        self.value = value
        self.prompts: list[str] = []

    async def __call__(self, context, params: types.ElicitRequestParams) -> types.ElicitResult:
        self.prompts.append(params.message)
        content = {"value": self.value} if self.action == "accept" else None
        return types.ElicitResult(action=self.action, content=content)


@contextlib.asynccontextmanager
async def mcp_session(url: str, *, user: ScriptedUser | None = None, headers: dict[str, str] | None = None,
                      pin: ChannelPin | None = None) -> AsyncIterator[ClientSession]:
    """Connect and initialize; `user=None` means a client without elicitation support.

    ``pin`` (for a TEE-mode server's self-signed HTTPS) makes every connection enforce that SPKI pin.
    """
    tls = {"verify": pin.ssl_context()} if pin is not None else {}
    async with httpx2.AsyncClient(headers=headers or {}, timeout=30, **tls) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, elicitation_callback=user) as session:
                await session.initialize()
                yield session


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(part.text for part in result.content if getattr(part, "text", None))
