"""Start-up recovery: a torn last line is cut and the cut is recorded; anything worse still refuses."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.log import AuditLog
from app.audit.signing import AuditSigner
from app.audit.verify import verify_audit_log

KEY = Ed25519PrivateKey.generate()


def written_log(path) -> bytes:
    log = AuditLog(path, AuditSigner(KEY))
    log.append({"type": "call", "tool": "query_database"})
    log.close()
    return path.read_bytes()


def reopen(path) -> list[dict]:
    AuditLog(path, AuditSigner(KEY)).close()
    return [json.loads(line) for line in path.read_text().splitlines()]


class TestTornTail:
    @pytest.mark.parametrize("torn", [b'{"seq": 3, "pr', b"\x00\x00\x00", b'{"seq": 3, "prev": "x"}'],
                             ids=["half-record", "garbage", "record-without-newline"])
    def test_a_torn_last_line_is_cut_and_the_cut_is_recorded(self, tmp_path, torn):
        path = tmp_path / "audit.jsonl"
        clean = written_log(path)
        path.write_bytes(clean + torn)
        records = reopen(path)
        assert path.read_bytes().startswith(clean)
        opening = records[3]
        assert opening["type"] == "open" and opening["recovered"]["cut_bytes"] == len(torn)
        assert opening["recovered"]["last_kept_seq"] == 2
        result = verify_audit_log(path, KEY.public_key())
        assert result.ok and any("cut a torn last line" in warning for warning in result.warnings)

    def test_a_clean_log_is_continued_untouched(self, tmp_path):
        path = tmp_path / "audit.jsonl"
        clean = written_log(path)
        records = reopen(path)
        assert path.read_bytes().startswith(clean) and "recovered" not in records[3]

    @pytest.mark.parametrize("damage", [b"not json\ntorn", b"torn only"], ids=["two-bad-lines", "nothing-valid"])
    def test_damage_beyond_the_last_line_still_refuses_to_start(self, tmp_path, damage):
        path = tmp_path / "audit.jsonl"
        path.write_bytes(damage if damage == b"torn only" else written_log(path) + damage)
        with pytest.raises(ValueError, match="move it aside"):
            AuditLog(path, AuditSigner(KEY))
