"""`mcp-tee client-config`: a stdio entry needs no token; --write merges and keeps the client's other servers."""

from __future__ import annotations

import json
import stat

from app.cli import main


class TestClientConfig:
    def test_write_merges_into_the_clients_file(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)
        existing = tmp_path / ".vscode" / "mcp.json"
        existing.parent.mkdir()
        existing.write_text(json.dumps({"servers": {"other": {"type": "stdio", "command": "other"}}}))
        assert main(["client-config", "--client", "vscode", "--write"]) == 0
        servers = json.loads(existing.read_text())["servers"]
        assert set(servers) == {"other", "mcp-tee"}
        assert servers["mcp-tee"]["type"] == "stdio" and "--transport" in servers["mcp-tee"]["args"]
        assert "headers" not in servers["mcp-tee"]
        assert stat.S_IMODE(existing.stat().st_mode) == 0o600

    def test_an_unparseable_file_is_left_alone(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)
        broken = tmp_path / ".cursor" / "mcp.json"
        broken.parent.mkdir()
        broken.write_text("{not json")
        assert main(["client-config", "--client", "cursor", "--write"]) == 2
        assert broken.read_text() == "{not json" and "not valid JSON" in capsys.readouterr().err

    def test_http_without_a_running_server_refuses(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("MCP_DEV_ISSUER_DIR", raising=False)
        assert main(["client-config", "--transport", "http"]) == 2
        assert "no dev issuer found" in capsys.readouterr().err
