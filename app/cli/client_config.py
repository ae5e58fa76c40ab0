"""`mcp-tee client-config`: a working MCP client entry for the local server, printed or merged into the client's file.

A stdio entry (the default) starts `mcp-tee dev --transport stdio` itself and needs no token: stdio
is local and single-user. An http entry points at the running `mcp-tee dev` with a freshly minted
dev token, which expires; the hint printed with it says how to refresh it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli.commands import register_module

EXIT_OK, EXIT_USAGE = 0, 2
SERVER_KEY = "mcp-tee"
CLIENTS = ("claude-desktop", "vscode", "cursor", "json")
# Where --write puts each client's entry (project-local where the client supports it).
CONFIG_FILES = {
    "claude-desktop": Path.home() / ".config" / "Claude" / "claude_desktop_config.json",
    "vscode": Path(".vscode") / "mcp.json",
    "cursor": Path(".cursor") / "mcp.json",
}
if sys.platform == "darwin":
    CONFIG_FILES["claude-desktop"] = (Path.home() / "Library" / "Application Support" / "Claude"
                                      / "claude_desktop_config.json")


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--client", choices=CLIENTS, default="json", help="which client's format")
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio",
                        help="stdio: the client starts the server, no token; http: the running `mcp-tee dev`, "
                             "with a dev token")
    parser.add_argument("--write", action="store_true",
                        help="merge the entry into the client's config file (keeps its other servers) instead of "
                             "printing it: " + ", ".join(f"{client} {path}" for client, path in CONFIG_FILES.items()))
    parser.set_defaults(func=run_client_config)


def register(subparsers: argparse._SubParsersAction) -> None:
    register_module(subparsers, __name__)


def _stdio_entry() -> dict[str, Any]:
    from app.cli.commands import command_path

    repo = Path.cwd().resolve()
    launcher = command_path().split()
    # absolute(), not resolve(): a venv's python is a symlink, and resolving it would leave the venv
    command = str((repo / launcher[0]).absolute()) if "/" in launcher[0] else launcher[0]
    return {"command": command, "args": [*launcher[1:], "dev", "--transport", "stdio",
                                         "--state-dir", str(repo / ".mcp-tee" / "stdio")]}


def _http_entry() -> tuple[dict[str, Any], str]:
    from app.auth.dev_issuer import DevIssuer
    from app.cli.tokens import DEFAULT_TTL_S, find_issuer

    issuer_dir, owner = find_issuer(None)
    url = owner.get("url")
    if not url:
        raise LookupError("no running `mcp-tee dev` found: start it (`make run`) first, or use --transport stdio")
    token = DevIssuer(issuer_dir).mint(scopes=["mcp:read", "mcp:write"], audience=owner.get("audience") or url,
                                       ttl_s=DEFAULT_TTL_S)
    entry = {"url": url, "headers": {"Authorization": f"Bearer {token}"}}
    return entry, (f"the token in this entry expires in {DEFAULT_TTL_S // 60} min; refresh it by running this "
                   "command again (with --write it replaces the entry)")


def client_document(client: str, transport: str) -> tuple[dict[str, Any], str | None]:
    """The config document for `client`, and a hint to show with it."""
    hint = None
    if transport == "http":
        if client == "claude-desktop":
            raise ValueError("Claude Desktop's config file starts local (stdio) servers only: use --transport stdio")
        entry, hint = _http_entry()
    else:
        entry = _stdio_entry()
    if client == "vscode":
        return {"servers": {SERVER_KEY: {"type": "http" if transport == "http" else "stdio", **entry}}}, hint
    return {"mcpServers": {SERVER_KEY: entry}}, hint


def _merge_into(path: Path, document: dict[str, Any]) -> None:
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text() or "{}")
        except ValueError:
            raise ValueError(f"{path} is not valid JSON; fix or move it first (nothing was written)") from None
    for section, servers in document.items():
        existing.setdefault(section, {}).update(servers)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(existing, indent=2) + "\n")
    path.chmod(0o600)  # an http entry carries a bearer token


def run_client_config(args: argparse.Namespace) -> int:
    try:
        document, hint = client_document(args.client, args.transport)
        if args.write:
            if args.client == "json":
                raise ValueError("--client json has no standard file: redirect the printed JSON instead")
            _merge_into(CONFIG_FILES[args.client], document)
    except (ValueError, LookupError) as exc:
        print(f"mcp-tee client-config: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.write:
        print(f"wrote the {SERVER_KEY} entry to {CONFIG_FILES[args.client]}; restart {args.client} to load it")
    else:
        print(json.dumps(document, indent=2))
    if hint:
        print(hint, file=sys.stderr)
    return EXIT_OK
