"""What `call` and `agent` share to reach a server: the bearer header from an env var, and a failure in words."""

from __future__ import annotations

import os


def bearer_from_env(env_var: str | None) -> str | None:
    """The bearer token held in `env_var` (None when not asked for); ValueError when the variable is unset.

    The token comes from the environment, never argv, so it stays out of shell history and `ps`.
    """
    if not env_var:
        return None
    token = os.environ.get(env_var)
    if not token:
        raise ValueError(f"{env_var} is not set (export it first)")
    return token


async def explain_connect_failure(url: str, sent_token: bool, exc: BaseException) -> str:
    """A sentence naming the cause and the fix; never the token.

    The probe carries no header and no credential: a bearer token travels only on a connection the
    client verified (the agent pins the attested TLS key). So the probe skips certificate checks (a
    TEE server's key is born in the process, with no CA behind it): its answer only words this error.
    """
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5, verify=False) as client:
            status = (await client.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "ping"})).status_code
    except httpx.HTTPError:
        return f"cannot reach {url}: is the server running? ({type(exc).__name__})"
    if status == 401 and not sent_token:
        return "401: the server wants a bearer token; pass --auth-token-env VAR (e.g. TOKEN from mcp-tee dev-token)"
    if status == 401:
        return ("the server refused the bearer token: check that it has not expired (mint a fresh one with "
                "mcp-tee dev-token), that its audience is this URL and that it carries the scopes the server needs")
    return f"could not complete the MCP exchange ({type(exc).__name__})"
