"""The `mcp-tee` command table: lazy imports, help that shows examples and defaults, no dead options."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.cli import main
from app.cli.commands import COMMANDS

# Imported by some subcommand; `mcp-tee --help` must need none of them (they cost seconds to import).
HEAVY_MODULES = ("fastmcp", "mcp", "httpx", "uvicorn", "psycopg", "jwt", "app.cli.agent", "app.cli.dev")


def _help(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


class TestLazyRegistration:
    def test_top_level_help_imports_no_subcommand(self):
        probe = ("import sys\nfrom app.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                 f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules], file=sys.stderr)")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        assert result.stderr.strip() == "[]"
        assert all(command.name in result.stdout for command in COMMANDS)

    def test_verify_token_does_not_load_the_mcp_stack(self):
        probe = ("import sys\nfrom app.cli import main\nmain(['verify-token', '--token', '/dev/null', '--issuer', "
                 "'http://attest.example.com', '--expect-hostdata', 'ab' * 32])\n"
                 "print([m for m in ('fastmcp', 'mcp', 'uvicorn', 'httpx') if m in sys.modules], file=sys.stderr)")
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert result.stderr.strip().splitlines()[-1] == "[]"


class TestHelp:
    @pytest.mark.parametrize("command", [command.name for command in COMMANDS])
    def test_every_command_has_an_example(self, command, capsys):
        assert "examples:" in _help(capsys, command)

    def test_dev_shows_defaults_and_only_options_it_honours(self, capsys):
        text = " ".join(_help(capsys, "dev").split())  # argparse wraps to the terminal's width
        assert "(default: 8080)" in text and "(default: streamable-http)" in text and "PG_BINDIR" in text
        assert "--tee" not in text and "--no-require-secrets" not in text

    def test_audit_alone_prints_its_help(self, capsys):
        assert main(["audit"]) == 2
        assert "verify" in capsys.readouterr().out

    def test_demo_help_prints_help_and_runs_nothing(self, tmp_path):
        result = subprocess.run([sys.executable, "-m", "app.devstack.demo", "--help"], capture_output=True,
                                text=True, timeout=60, cwd=tmp_path,
                                env={"PYTHONPATH": str(__import__("pathlib").Path(__file__).parents[2])})
        assert result.returncode == 0 and "usage:" in result.stdout
        assert not (tmp_path / ".mcp-tee").exists()
