"""Redaction: loaded secrets and credential formats never reach records or logs; results stay intact."""

from __future__ import annotations

import io
import logging
import re

import pytest

from app.audit.redaction import MARK, Redactor, attach_log_filter, install_log_redaction
from tests.support.stack import Stack

CANARY = "canary-Zq8v-do-not-leak-41"
GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


class TestCredentialPatterns:
    @pytest.mark.parametrize(("text", "leak"), [
        (f"token {GHP} here", GHP),
        ("gho_" + "x" * 36, "gho_" + "x" * 36),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "github_pat_11ABCDEFG0123456789"),
        ("xoxb-1234567890-abcdefghij", "xoxb-1234567890"),
        ("xoxp-1234567890-abcdefghij", "xoxp-1234567890"),
        (f"jwt={JWT}", "c2lnbmF0dXJl"),
        ("postgresql://app:S3cr3t!pw@db.internal:5432/prod", "S3cr3t!pw"),
        ("postgres://app:S3cr3t!pw@db/prod", "S3cr3t!pw"),
        ("host=db user=app password=S3cr3t!pw dbname=prod", "S3cr3t!pw"),
        ("HOST=db PASSWORD=S3cr3t!pw", "S3cr3t!pw"),  # the one-pass pre-check keeps each pattern's flags
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("authorization=Bearer opaque-token-value", "opaque-token-value"),
        ("sent with Bearer opaque.token-value", "opaque.token-value"),
        ("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX", "XXXXXXXXXXXX"),
    ])
    def test_format_is_redacted(self, text, leak):
        redacted = Redactor().redact_text(text)
        assert leak not in redacted and MARK in redacted

    def test_a_pattern_with_a_compile_flag_cannot_join_the_combined_search(self):
        from app.audit.redaction import _scoped

        with pytest.raises(ValueError, match="inline"):
            _scoped(re.compile(r"secret-\w+", re.IGNORECASE))
        assert _scoped(re.compile(r"(?i)secret-\w+")) == r"(?i:secret-\w+)"

    def test_sensitive_keys_are_redacted_whatever_the_value(self):
        assert Redactor().redact({"password": "x", "Token": "y", "note": "z"}) == {
            "password": MARK, "Token": MARK, "note": "z"}


class TestExactSecrets:
    def test_loaded_secret_is_removed_everywhere(self):
        redactor = Redactor([CANARY])
        value = {"a": [f"x{CANARY}y", {"b": CANARY}], "c": 3}
        assert CANARY not in repr(redactor.redact(value))

    def test_secret_added_at_runtime(self):
        redactor = Redactor()
        redactor.add_secret("session-token-abcdef")
        assert redactor.redact_text("use session-token-abcdef") == f"use {MARK}"

    def test_longer_secret_containing_a_shorter_one_is_removed_whole(self):
        redactor = Redactor(["abcdefgh", "abcdefgh-ijklmnop"])
        assert redactor.redact_text("abcdefgh-ijklmnop") == MARK


class TestNoFalsePositives:
    @pytest.mark.parametrize("text", [
        "please rotate the ghp_ token before Friday",
        "eyJ is how base64 JSON starts",
        "postgres://db.internal:5432/prod",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "the password policy requires 12 characters",
        "SELECT id, title FROM issues WHERE state = 'open'",
    ])
    def test_ordinary_text_is_unchanged(self, text):
        assert Redactor([CANARY]).redact_text(text) == text

    async def test_tool_result_that_looks_like_a_secret_reaches_the_caller_intact(self, tmp_path):
        stack = Stack(tmp_path, secrets=(CANARY,))
        async with stack.client() as client:
            result = await client.call_tool("github_search_issues", {"query": GHP})
        assert GHP in result.structured_content["issues"][0]["title"]
        stack.audit.close()
        assert GHP not in stack.audit_path.read_text()


class TestCanaryNowhere:
    async def test_canary_absent_from_audit_file(self, tmp_path):
        stack = Stack(tmp_path, secrets=(CANARY,))
        async with stack.client() as client:
            await client.call_tool("query_database", {"sql": f"select '{CANARY}'"})
            await client.call_tool("send_notification", {"message": f"pw {CANARY}", "channel": CANARY}, raise_on_error=False)
            await client.call_tool("github_search_issues", {"query": CANARY, "repo": f"{GHP}/{JWT}"})
            await client.call_tool("debug_dump_env", {"x": CANARY}, raise_on_error=False)
        stack.audit.close()
        text = stack.audit_path.read_text()
        for leak in (CANARY, GHP, JWT):
            assert leak not in text
        assert len(stack.calls()) == 4

    def test_canary_absent_from_logs(self):
        stream = io.StringIO()
        logger = logging.getLogger("mcp-tee-test-redaction")
        logger.propagate = False
        handler = logging.StreamHandler(stream)
        logger.addHandler(handler)
        try:
            install_log_redaction(Redactor([CANARY]), logger)
            child = logging.getLogger("mcp-tee-test-redaction.child")
            child.warning("connecting with %s and %s", CANARY, GHP)
            try:
                raise RuntimeError(f"failed: {CANARY}")
            except RuntimeError:
                child.exception("upstream said")
        finally:
            logger.removeHandler(handler)
        output = stream.getvalue()
        assert "connecting with" in output and "upstream said" in output
        assert CANARY not in output and GHP not in output


class TestEveryHandlerIsCovered:
    def test_a_library_logger_that_does_not_propagate_is_redacted_too(self):
        """fastmcp and uvicorn keep handlers of their own; the filter must reach them."""
        canary = "ghp_CANARYnotpropagated000000000000000001"
        log_filter = install_log_redaction(Redactor([canary]))
        stream = io.StringIO()
        library = logging.getLogger("some.library.installed.later")
        library.propagate = False
        library.addHandler(logging.StreamHandler(stream))
        try:
            attach_log_filter(log_filter)  # what the server does once uvicorn is configured
            library.error("upstream said %s", canary)
        finally:
            library.handlers.clear()
        assert canary not in stream.getvalue() and "[REDACTED]" in stream.getvalue()
