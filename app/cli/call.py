"""`mcp-tee call TOOL`: call one tool from the terminal, answering its confirmation prompt here.

The way to see a write succeed end to end: the Inspector's CLI cannot show a confirmation prompt,
so `send_notification` is refused there. This client declares MCP elicitation, prints the exact
question the server asks, and accepts only an explicit "y"/"yes" typed on stdin; anything else,
end of input included, declines and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.commands import register_module

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_URL = "http://127.0.0.1:8080/mcp"
YES = frozenset({"y", "yes"})


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("tool", help="the tool to call, e.g. send_notification")
    parser.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a string argument; repeatable")
    parser.add_argument("--arguments", metavar="JSON", help="arguments as a JSON object (merged under --arg)")
    parser.add_argument("--url", help=f"the server's MCP URL (default: the running mcp-tee dev's, else {DEFAULT_URL})")
    parser.add_argument("--auth-token-env", metavar="VAR", help="send the bearer token held in this env var")
    parser.add_argument("--json", action="store_true", help="print {is_error, structured_content, text} as JSON")
    parser.set_defaults(func=run_call)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    arguments = json.loads(args.arguments) if args.arguments else {}
    if not isinstance(arguments, dict):
        raise ValueError("--arguments must be a JSON object")
    for pair in args.arg:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"--arg wants KEY=VALUE, got {pair!r}")
        arguments[key] = value
    return arguments


def _default_url() -> str:
    from app.devstack.lock import find_running_dev

    owner, _ = find_running_dev(Path.cwd())
    return (owner or {}).get("url") or DEFAULT_URL


async def _ask_the_user(context, params) -> Any:
    """The elicitation callback: show the server's exact question, accept only an explicit yes."""
    import mcp_types as types

    print(f"\n{params.message}\n", file=sys.stderr)
    print("Allow? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = await asyncio.to_thread(sys.stdin.readline)
    if not answer:
        return types.ElicitResult(action="cancel")
    if answer.strip().lower() in YES:
        return types.ElicitResult(action="accept", content={"value": True})
    return types.ElicitResult(action="decline")


async def _call(url: str, headers: dict[str, str], tool: str, arguments: dict[str, Any]):
    import httpx2
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, elicitation_callback=_ask_the_user) as session:
                await session.initialize()
                return await session.call_tool(tool, arguments)


def run_call(args: argparse.Namespace) -> int:
    from app.cli.connecting import bearer_from_env, explain_connect_failure

    try:
        arguments = _arguments(args)
        bearer = bearer_from_env(args.auth_token_env)
    except ValueError as exc:
        print(f"mcp-tee call: {exc}", file=sys.stderr)
        return EXIT_USAGE
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    url = args.url or _default_url()
    try:
        result = asyncio.run(_call(url, headers, args.tool, arguments))
    except Exception as exc:  # the transport's own errors say little; name the cause instead
        print(f"mcp-tee call: {asyncio.run(explain_connect_failure(url, bool(headers), exc))}", file=sys.stderr)
        return EXIT_FAILED
    text = "\n".join(part.text for part in result.content if getattr(part, "text", None))
    if args.json:
        print(json.dumps({"is_error": bool(result.is_error), "structured_content": result.structured_content,
                          "text": text}))
    elif result.structured_content is not None and not result.is_error:
        print(json.dumps(result.structured_content, indent=2))
    else:
        print(text, file=sys.stderr if result.is_error else sys.stdout)
    return EXIT_FAILED if result.is_error else EXIT_OK
