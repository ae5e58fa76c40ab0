"""`mcp-tee`: the command line. Subcommands are listed in `app.cli.commands` and imported only when used."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from app import __version__
from app.cli.commands import COMMANDS, HelpFormatter, add_command, add_summary

EXIT_USAGE = 2
DESCRIPTION = "mcp-tee: a confidential MCP server, and the tools to run, call, audit and attest it."
EPILOG = """examples:
  make run                                   # = mcp-tee dev: local server on http://127.0.0.1:8080/mcp
  TOKEN=$(.venv/bin/mcp-tee dev-token --scopes mcp:read,mcp:write)
  mcp-tee COMMAND --help                     # every command's options, defaults and examples
"""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(chosen=next((arg for arg in argv if not arg.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C is an ordinary way to stop any command: no traceback
        return 130
    except BrokenPipeError:  # `mcp-tee ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only `chosen` (a command name) is configured in full."""
    parser = argparse.ArgumentParser(prog="mcp-tee", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"mcp-tee {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        (add_command if command.name == chosen else add_summary)(commands, command)
    return parser


if __name__ == "__main__":
    sys.exit(main())
