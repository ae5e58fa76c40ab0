"""Issue 13, finding 4: the audit log cannot be flooded, and a torn last line no longer blocks a restart."""

from __future__ import annotations

import json

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastmcp import Client

from app.audit.clipping import MAX_NAME_CHARS
from app.audit.log import AuditLog
from app.audit.signing import AuditSigner, public_key_b64
from app.audit.verify import verify_audit_log
from app.cli import main as cli_main
from app.config import Settings
from app.secrets.env import load_env_secrets
from app.server.assembly import assemble
from tests.support.authed import authed_stack

HUGE_NAME = "x" * 3_000_000
FLOOD = 25  # the packaged policy's refusal burst is 20


class TestAuditFlooding:
    def test_undeclared_tools_with_3mb_names_write_bounded_records_and_then_are_summarised(self, tmp_path):
        with authed_stack(tmp_path) as server:
            before = server.stack.audit_path.stat().st_size
            with httpx.Client() as client:
                session = server.open_session(client, "eve")
                answers = [server.legacy_call(client, session, HUGE_NAME, {HUGE_NAME[:100_000]: "y" * 100_000})
                           for _ in range(FLOOD)]
            bystander = server.modern_call("bob", "attestation_status", {})
            server.stack.audit.close()
        texts = [answer["result"]["content"][0]["text"] for answer in answers]
        assert all(answer["result"]["isError"] for answer in answers)
        assert texts[:20] == ["unknown tool or not permitted"] * 20
        assert all(text.startswith("too many refused calls") for text in texts[20:]), texts[20:]
        assert bystander["result"]["isError"] is False, "one principal's refusals never hold back another"
        grown = server.stack.audit_path.stat().st_size - before
        assert grown < 256 * 1024, f"{FLOOD} flooding calls wrote {grown} bytes of audit"
        records = server.stack.records()
        eve = [r for r in records if r.get("principal") == "eve"]
        calls = [r for r in eve if r["type"] == "call"]
        assert len(calls) == 20 and all(len(r["tool"]) < MAX_NAME_CHARS + 64 and "sha256:" in r["tool"] for r in calls)
        assert [r["refused_calls"] for r in eve if r["type"] == "suppressed"] == [FLOOD - 20]
        assert verify_audit_log(server.stack.audit_path, server.stack.signer_key.public_key()).ok


def crashed_log(path, key: Ed25519PrivateKey, torn: bytes) -> None:
    """A log whose writer wrote a few records and died in the middle of writing `torn` (no final checkpoint)."""
    signer = AuditSigner(key)
    log = AuditLog(path, signer)
    for index in range(2):
        log.append({"type": "call", "tool": "query_database", "n": index})
    log.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + torn)  # the final checkpoint never made it; a torn line did


class TestCrashRestart:
    async def test_the_server_restarts_on_an_over_long_torn_line_and_verify_reports_the_cut(self, tmp_path, capsys):
        audit_path = tmp_path / "audit.jsonl"
        torn = b'{"seq":5,"tool":"' + b"x" * 3_000_000
        first_key = Ed25519PrivateKey.generate()
        crashed_log(audit_path, first_key, torn)
        server = assemble(Settings(audit_log=str(audit_path)), load_env_secrets({}))  # refused to start before
        try:
            async with Client(server.mcp) as client:
                second_key = (await client.call_tool("attestation_status", {})).structured_content["audit_public_key"]
        finally:
            await server.aclose()
        verified = cli_main(["audit", "verify", str(audit_path), "--public-key",
                             public_key_b64(first_key.public_key()), "--public-key", second_key])
        stderr = capsys.readouterr().err
        assert verified == 0, stderr
        assert f"start-up cut a torn last line of {len(torn)} bytes" in stderr
        opening = [json.loads(line) for line in audit_path.read_text().splitlines() if '"type":"open"' in line][-1]
        assert opening["recovered"]["last_kept_seq"] == 2
