"""Issue 13, finding 5: a log cut back to an earlier run's final checkpoint is caught with a kept head."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastmcp import Client

from app.audit.signing import checkpoint_message
from app.cli import main as cli_main
from app.config import Settings
from app.secrets.env import load_env_secrets
from app.server.assembly import assemble
from app.audit.verify import load_public_key

AUDIT_KEY = Ed25519PrivateKey.generate()  # in TEE mode every run derives the same key


async def one_run(audit_path) -> dict:
    """Start the assembled server on `audit_path`, ask attestation_status for the signed head, stop."""
    server = assemble(Settings(audit_log=str(audit_path)), load_env_secrets({}), audit_key=AUDIT_KEY)
    try:
        async with Client(server.mcp) as client:
            status = (await client.call_tool("attestation_status", {})).structured_content
    finally:
        await server.aclose()
    return status


def verify(capsys, audit_path, status, *extra: str) -> tuple[int, str]:
    code = cli_main(["audit", "verify", str(audit_path), "--public-key", status["audit_public_key"], *extra])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


class TestAuditTruncation:
    async def test_cutting_back_to_run_one_is_caught_with_the_kept_head(self, tmp_path, capsys):
        audit_path = tmp_path / "audit.jsonl"
        await one_run(audit_path)
        run_one_end = audit_path.read_bytes()
        status = await one_run(audit_path)
        kept_head = status["audit_head"]["expect_head"]  # what the auditor keeps outside the host

        assert verify(capsys, audit_path, status, "--expect-head", kept_head)[0] == 0
        audit_path.write_bytes(run_one_end)  # the attack: drop run two entirely
        code, output = verify(capsys, audit_path, status)
        assert code == 0 and "cannot be detected" in output, "without a kept head the cut is invisible"
        code, output = verify(capsys, audit_path, status, "--expect-head", kept_head)
        assert code == 1 and "(truncated)" in output

    async def test_the_head_is_signed_by_the_attested_audit_key(self, tmp_path):
        status = await one_run(tmp_path / "audit.jsonl")
        checkpoint = dict(status["audit_head"]["checkpoint"])
        signature = base64.b64decode(checkpoint.pop("sig"))
        load_public_key(status["audit_public_key"]).verify(signature, checkpoint_message(checkpoint))
        assert checkpoint["seq"] == status["audit_head"]["seq"]

    async def test_a_rewritten_record_at_the_kept_head_is_caught(self, tmp_path, capsys):
        audit_path = tmp_path / "audit.jsonl"
        status = await one_run(audit_path)
        seq, digest = status["audit_head"]["expect_head"].split(":")
        code, output = verify(capsys, audit_path, status, "--expect-head", f"{seq}:{'0' * 64}")
        assert code == 1 and "not the expected head" in output
