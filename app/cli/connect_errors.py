"""Why a client could not talk to an MCP server, in words: the MCP client reports an HTTP 401 as a generic error."""

from __future__ import annotations


async def explain_connect_failure(url: str, sent_token: bool, exc: BaseException) -> str:
    """A sentence naming the cause and the fix; never the token.

    The probe carries no header: a bearer token travels only on the connection a client verified.
    """
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5) as client:
            status = (await client.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"})).status_code
    except httpx.HTTPError:
        return f"cannot reach {url}: is the server running? ({type(exc).__name__})"
    if status == 401 and not sent_token:
        return "401: the server wants a bearer token; pass --auth-token-env VAR (e.g. TOKEN from mcp-tee dev-token)"
    if status == 401:
        return ("the server refused the bearer token: check that it has not expired (mint a fresh one with "
                "mcp-tee dev-token), that its audience is this URL and that it carries the scopes the server needs")
    return f"could not complete the MCP exchange ({type(exc).__name__})"
