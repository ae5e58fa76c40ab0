"""The local dev issuer: the key stays private on disk, and its tokens pass the production verifier."""

from __future__ import annotations

import argparse
import stat

import pytest

from app.auth.resource_server import AuthError, BearerTokenVerifier
from app.auth.settings import AuthSettings
from app.cli.tokens import register
from app.auth.dev_issuer import DevIssuer

AUDIENCE = "http://127.0.0.1:8080/mcp"


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mcp-tee")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


class TestDevIssuer:
    def test_private_key_is_owner_only(self, tmp_path):
        issuer = DevIssuer(tmp_path / "dev")
        issuer.ensure()
        assert stat.S_IMODE((tmp_path / "dev" / "signing-key.pem").stat().st_mode) == 0o600
        assert "PRIVATE" not in issuer.jwks_path.read_text() and '"d"' not in issuer.jwks_path.read_text()

    async def test_cli_token_passes_the_verifier_configured_from_env(self, tmp_path, capsys):
        state = tmp_path / "dev"
        assert _cli("dev-token", "--scopes", "mcp:read,mcp:write", "--sub", "bob", "--state-dir", str(state),
                    "--audience", AUDIENCE) == 0
        token = capsys.readouterr().out.strip()
        settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": "dev", "MCP_AUTH_AUDIENCE": AUDIENCE}, dev_state_dir=state)
        principal = await BearerTokenVerifier(settings).verify(token)
        assert principal.subject == "bob" and principal.scopes == {"mcp:read", "mcp:write"}

    async def test_token_for_another_audience_is_refused(self, tmp_path):
        issuer = DevIssuer(tmp_path / "dev")
        token = issuer.mint(scopes=["mcp:read"], audience="http://127.0.0.1:9999/mcp")
        settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": "dev", "MCP_AUTH_AUDIENCE": AUDIENCE},
                                         dev_state_dir=tmp_path / "dev")
        with pytest.raises(AuthError, match="audience"):
            await BearerTokenVerifier(settings).verify(token)

    async def test_token_from_another_dev_key_is_refused(self, tmp_path):
        foreign = DevIssuer(tmp_path / "other").mint(scopes=["mcp:read"], audience=AUDIENCE)
        settings = AuthSettings.from_env({"MCP_AUTH_ISSUER": "dev"}, dev_state_dir=tmp_path / "dev")
        with pytest.raises(AuthError):
            await BearerTokenVerifier(settings).verify(foreign)

    def test_cli_refuses_empty_scopes(self, tmp_path):
        assert _cli("dev-token", "--scopes", ",", "--state-dir", str(tmp_path / "dev")) == 2
