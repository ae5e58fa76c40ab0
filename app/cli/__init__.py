"""`mcp-tee`: the command line. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from app import __version__
from app.cli import agent, audit, dev, emulator, serve, tokens, trust

EXIT_USAGE = 2
# Order of `mcp-tee --help`: serving first, then local development, then the trust-chain tools.
SUBCOMMANDS = (serve, dev, tokens, audit, trust, emulator, agent)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    return int(args.func(args) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-tee", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mcp-tee {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.register(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
