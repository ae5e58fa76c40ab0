"""Tamper evidence: edits, deletions, reorderings and truncations are caught and named."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.log import AuditLog
from app.audit.signing import AuditSigner, public_key_b64
from app.audit.verify import ExpectedHead, verify_audit_log
from app.cli.audit import register

RECORDS = 12
CHECKPOINT_EVERY = 5


def _write_log(path: Path, key: Ed25519PrivateKey) -> list[bytes]:
    log = AuditLog(path, AuditSigner(key), checkpoint_every=CHECKPOINT_EVERY)
    for index in range(RECORDS):
        log.append({"type": "call", "tool": "query_database", "n": index})
    log.close()
    return path.read_bytes().splitlines()


def _rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="mcp-tee")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def log(tmp_path, key) -> tuple[Path, list[bytes]]:
    path = tmp_path / "audit.jsonl"
    return path, _write_log(path, key)


class TestIntactLog:
    def test_verifies(self, log, key):
        path, lines = log
        result = verify_audit_log(path, key.public_key())
        assert result.ok and result.records == len(lines) and result.bad_line is None

    def test_cli_exits_zero(self, log, key, capsys):
        assert _cli("audit", "verify", str(log[0]), "--public-key", public_key_b64(key.public_key())) == 0
        assert "OK" in capsys.readouterr().out


def _edit(lines: list[bytes]) -> list[bytes]:
    record = json.loads(lines[3])
    record["tool"] = "send_notification"
    return [*lines[:3], json.dumps(record, separators=(",", ":")).encode(), *lines[4:]]


def _rechain_after_edit(lines: list[bytes]) -> list[bytes]:
    """An attacker edits line 4 and recomputes every later hash; only the signature stops them."""
    edited = _edit(lines)
    for index in range(4, len(edited)):
        record = json.loads(edited[index])
        record["prev"] = hashlib.sha256(edited[index - 1]).hexdigest()
        edited[index] = json.dumps(record, separators=(",", ":")).encode()
    return edited


def _last_intermediate_checkpoint(lines: list[bytes]) -> int:
    kinds = [json.loads(line).get("type") for line in lines]
    return max(i for i, kind in enumerate(kinds[:-1]) if kind == "checkpoint")


TAMPERS = {
    "edit": (_edit, 4, "record seq 3 was altered"),
    "delete": (lambda lines: lines[:3] + lines[4:], 4, "seq 4 where 3 was expected"),
    "reorder": (lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]], 4, "seq 4 where 3 was expected"),
    "insert": (lambda lines: [*lines[:3], lines[3], *lines[3:]], 5, "seq 3 where 4 was expected"),
    "truncate-final": (lambda lines: lines[:-1], None, "without a final signed checkpoint"),
    "truncate-to-checkpoint": (lambda lines: lines[:_last_intermediate_checkpoint(lines) + 1], None,
                               "without a final signed checkpoint"),
    "truncate-head": (lambda lines: lines[2:], 1, "seq 2 where 0 was expected"),
    "rechain": (_rechain_after_edit, None, "no valid signature"),
    "garbage": (lambda lines: [*lines[:3], b"{not json", *lines[4:]], 4, "not a JSON record"),
}


class TestTamperDetected:
    @pytest.mark.parametrize("kind", sorted(TAMPERS))
    def test_verify_names_the_first_bad_record(self, log, key, kind):
        path, lines = log
        tamper, bad_line, reason = TAMPERS[kind]
        tampered = tamper(lines)
        _rewrite(path, tampered)
        result = verify_audit_log(path, key.public_key())
        assert not result.ok
        assert reason in result.reason
        if bad_line is not None:
            assert result.bad_line == bad_line
        else:
            assert 1 <= result.bad_line <= len(tampered)

    @pytest.mark.parametrize("kind", ["edit", "delete", "reorder", "truncate-final"])
    def test_cli_exits_non_zero_and_names_the_line(self, log, key, kind, capsys):
        path, lines = log
        _rewrite(path, TAMPERS[kind][0](lines))
        assert _cli("audit", "verify", str(path), "--public-key", public_key_b64(key.public_key())) == 1
        assert f"{path}: line " in capsys.readouterr().err

    def test_wrong_key_is_refused(self, log):
        other = Ed25519PrivateKey.generate().public_key()
        result = verify_audit_log(log[0], other)
        assert not result.ok and "no valid signature" in result.reason

    def test_cli_reads_a_pem_key_file(self, log, key, tmp_path):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
        pem = tmp_path / "audit.pub"
        pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        assert _cli("audit", "verify", str(log[0]), "--public-key", str(pem)) == 0

    def test_cli_refuses_a_malformed_key(self, log):
        assert _cli("audit", "verify", str(log[0]), "--public-key", "not-a-key") == 2


class TestRestartContinuesTheChain:
    def test_second_process_appends_and_both_keys_verify(self, tmp_path, key):
        path = tmp_path / "audit.jsonl"
        _write_log(path, key)
        second = Ed25519PrivateKey.generate()
        _write_log(path, second)
        assert verify_audit_log(path, [key.public_key(), second.public_key()]).ok
        assert not verify_audit_log(path, [second.public_key()]).ok

    def test_unclean_shutdown_before_restart_is_a_warning(self, tmp_path, key):
        path = tmp_path / "audit.jsonl"
        lines = _write_log(path, key)
        _rewrite(path, lines[:-1])
        _write_log(path, key)
        result = verify_audit_log(path, key.public_key())
        assert result.ok and any("did not shut down cleanly" in w for w in result.warnings)

    def test_damaged_tail_refuses_to_continue(self, tmp_path, key):
        path = tmp_path / "audit.jsonl"
        path.write_text("{broken\n")
        with pytest.raises(ValueError, match="move it aside"):
            AuditLog(path, AuditSigner(key))


class TestExpectedHead:
    @pytest.mark.parametrize("text", ["", "12", "x:" + "a" * 64, "12:" + "a" * 63, "12:" + "A" * 64, "-1:" + "a" * 64])
    def test_a_malformed_head_is_refused(self, text):
        with pytest.raises(ValueError, match="SEQ:SHA256"):
            ExpectedHead.parse(text)

    def test_a_well_formed_head_parses(self):
        assert ExpectedHead.parse("7:" + "ab" * 32) == ExpectedHead(7, "ab" * 32)
