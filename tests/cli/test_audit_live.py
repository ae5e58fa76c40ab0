"""`mcp-tee audit verify --live`: a running server's unsigned tail is pending, not tampering; tampering still is."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.log import AuditLog
from app.audit.signing import AuditSigner, public_key_b64
from app.cli import main


def running_log(path: Path, key: Ed25519PrivateKey) -> None:
    """A log as a live server leaves it: checkpoints every 5 records, no final checkpoint yet."""
    log = AuditLog(path, AuditSigner(key), checkpoint_every=5)
    for index in range(12):
        log.append({"type": "call", "tool": "query_database", "n": index})
    log.close()
    lines = path.read_bytes().splitlines()
    assert json.loads(lines[-1]).get("final") is True
    path.write_bytes(b"".join(line + b"\n" for line in lines[:-1]))


def verify(path: Path, key: Ed25519PrivateKey, *flags: str) -> int:
    return main(["audit", "verify", str(path), "--public-key", public_key_b64(key.public_key()), *flags])


class TestLiveMode:
    def test_the_unsigned_tail_is_pending(self, tmp_path, capsys):
        key, path = Ed25519PrivateKey.generate(), tmp_path / "audit.jsonl"
        running_log(path, key)
        assert verify(path, key) == 1
        assert "without a final signed checkpoint" in capsys.readouterr().err
        assert verify(path, key, "--live", "--json") == 0
        verdict = json.loads(capsys.readouterr().out)
        assert verdict["ok"] and verdict["pending"] > 0

    def test_an_edit_before_the_last_checkpoint_is_still_tampering(self, tmp_path, capsys):
        key, path = Ed25519PrivateKey.generate(), tmp_path / "audit.jsonl"
        running_log(path, key)
        lines = path.read_bytes().splitlines()
        lines[2] = lines[2].replace(b'"n":1', b'"n":7')
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        assert verify(path, key, "--live") == 1
        assert "altered" in capsys.readouterr().err
