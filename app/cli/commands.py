"""The table of `mcp-tee` subcommands, and lazy registration: a module is imported only when its command runs.

Importing every subcommand module made `mcp-tee --help` take 2.6 s (the agent alone pulls in the
MCP client). `mcp-tee --help` now needs only this table; `mcp-tee X ...` imports X's module alone,
and each module keeps its heavy imports inside the function that runs the command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """One subcommand.

    Args:
        name: What the user types after `mcp-tee`.
        module: The module whose `configure(parser, name)` adds its arguments and `func`.
        summary: One line for `mcp-tee --help`.
        examples: Shown under "examples:" in the command's own `--help`.
    """

    name: str
    module: str
    summary: str
    examples: tuple[str, ...]


# Order of `mcp-tee --help`: serving first, then local development, then the trust-chain tools.
COMMANDS = (
    Command("serve", "app.cli.serve", "run the MCP server (production entry point; TEE mode with --tee)",
            ("mcp-tee serve --port 8080", "MCP_TEE_MODE=tee mcp-tee serve --host 0.0.0.0")),
    Command("dev", "app.cli.dev", "run locally (non-TEE) with a throwaway Postgres and offline stand-ins",
            ("mcp-tee dev                      # what `make run` runs",
             "mcp-tee dev --port 8081 --state-dir /tmp/second   # a second instance",
             "mcp-tee dev --transport stdio    # for a desktop client: local user, no token",
             "PG_BINDIR=/usr/lib/postgresql/15/bin mcp-tee dev   # Postgres binaries not found by pg_config")),
    Command("dev-token", "app.cli.tokens", "mint a bearer token from the running dev server's issuer",
            ("TOKEN=$(.venv/bin/mcp-tee dev-token --scopes mcp:read,mcp:write)",
             "mcp-tee dev-token --ttl 600 --json")),
    Command("client-config", "app.cli.client_config", "print (or --write) an MCP client entry for the local server",
            ("mcp-tee client-config --client claude-desktop",
             "mcp-tee client-config --client vscode --transport http --write")),
    Command("call", "app.cli.call", "call one tool from the terminal; confirmation prompts are asked here",
            ("TOKEN=$(.venv/bin/mcp-tee dev-token --scopes mcp:read,mcp:write) \\\n"
             "    mcp-tee call send_notification --arg message='hello' --auth-token-env TOKEN",
             "mcp-tee call query_database --arg sql='SELECT count(*) FROM issues' --auth-token-env TOKEN --json")),
    Command("check", "app.cli.check", "validate configuration and capability policy, probe upstreams; serve nothing",
            ("mcp-tee check", "MCP_CAPABILITY_POLICY=my.toml mcp-tee check --json")),
    Command("audit", "app.cli.audit", "audit log tools (verify the hash chain and signed checkpoints)",
            ("mcp-tee audit verify .mcp-tee/audit.jsonl --public-key KEY --live",)),
    Command("verify-token", "app.cli.trust", "verify an MAA attestation token, check by check",
            ("mcp-tee verify-token --token maa.jwt --issuer https://sharedeus.eus.attest.azure.net "
             "--expect-hostdata HEX",)),
    Command("seal", "app.cli.trust", "seal a secret read from stdin (offline or into Key Vault)",
            ("mcp-tee seal --public-key release-key.pub.pem < token.txt",
             "mcp-tee seal --vault https://V.vault.azure.net --key K --name github-token < token.txt")),
    Command("emulator", "app.cli.emulator", "run the offline attestation emulator (NOT A TEE)",
            ("mcp-tee emulator --cce-policy cce.b64 --state-dir .mcp-tee/emulator",)),
    Command("capability", "app.cli.capability", "narrow (attenuate) or inspect a delegated capability token, offline",
            ("mcp-tee capability attenuate --tools query_database --tables issues,incidents --max-rows 50 \\\n"
             "    --ttl 10m --channel general --max-calls 20 < root.cap > triage.cap",
             "mcp-tee capability inspect --root-key CAPABILITY_PUB < triage.cap")),
    Command("agent", "app.cli.agent", "verify a server's attestation before trusting it (verify-then-trust)",
            ("mcp-tee agent https://HOST/mcp --maa-endpoint sharedeus.eus.attest.azure.net --expect-hostdata HEX",
             "mcp-tee agent http://127.0.0.1:8080/mcp --auth-token-env TOKEN --trust-dev-issuer "
             "http://127.0.0.1:9000 --expect-hostdata HEX")),
)
BY_NAME = {command.name: command for command in COMMANDS}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout and appends "(default: X)" where a default says something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "%(default)" in help_text or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)"


def examples_epilog(examples: tuple[str, ...]) -> str:
    return "examples:\n" + "\n".join(f"  {example}" for example in examples)


def add_command(subparsers: argparse._SubParsersAction, command: Command) -> argparse.ArgumentParser:
    """Add `command` fully: import its module and let it configure the parser."""
    parser = subparsers.add_parser(command.name, help=command.summary, description=command.summary,
                                   epilog=examples_epilog(command.examples), formatter_class=HelpFormatter)
    importlib.import_module(command.module).configure(parser, command.name)
    return parser


def add_summary(subparsers: argparse._SubParsersAction, command: Command) -> None:
    """Add `command` by name and summary only, for `mcp-tee --help`; nothing is imported."""
    subparsers.add_parser(command.name, help=command.summary)


def register_module(subparsers: argparse._SubParsersAction, module: str) -> None:
    """Add every command that `module` implements (tests drive one module's commands this way)."""
    for command in COMMANDS:
        if command.module == module:
            add_command(subparsers, command)


def command_path() -> str:
    """How the user can run `mcp-tee` again from here: `.venv/bin/mcp-tee` is usually not on PATH."""
    script = Path(sys.argv[0])
    if script.name == "mcp-tee":
        resolved = shutil.which("mcp-tee")
        if resolved and Path(resolved).resolve() == script.resolve():
            return "mcp-tee"
        return os.path.relpath(script) if not os.path.relpath(script).startswith("..") else str(script.resolve())
    return f"{os.path.relpath(sys.executable)} -m app.cli"
