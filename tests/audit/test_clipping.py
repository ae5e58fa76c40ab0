"""Audit clipping: every caller-chosen string, mapping, list and level is bounded; redaction survives the cut."""

from __future__ import annotations

import hashlib

from app.audit.clipping import MAX_DEPTH, MAX_RECORDED_CHARS, MAX_RECORDED_ITEMS, clip_text, clip_value
from app.audit.redaction import Redactor

SECRET = "canary-secret-value-0123456789"


class TestClipping:
    def test_a_long_string_keeps_its_head_length_and_hash(self):
        text = "x" * 3_000_000
        clipped = clip_text(text)
        assert clipped.startswith("x" * MAX_RECORDED_CHARS + "…[3000000 chars, sha256:")
        assert hashlib.sha256(text.encode()).hexdigest()[:16] in clipped and len(clipped) < MAX_RECORDED_CHARS + 64

    def test_a_secret_straddling_the_cut_is_redacted_whole(self):
        text = "a" * (MAX_RECORDED_CHARS - 10) + SECRET + "b" * 1000
        clipped = clip_text(text, redact=Redactor([SECRET]).redact_text)
        assert SECRET[:10] not in clipped and "[REDACTED]"[:10] in clipped

    def test_width_depth_and_credential_keys_are_bounded(self):
        wide = {f"k{index}": index for index in range(1000)}
        deep: dict = {"leaf": 1}
        for _ in range(50):
            deep = {"d": deep}
        clipped = clip_value({"wide": wide, "deep": deep, "list": list(range(1000)), "password": "hunter2"})
        assert len(clipped["wide"]) == MAX_RECORDED_ITEMS + 1
        assert clipped["wide"]["…omitted"] == 1000 - MAX_RECORDED_ITEMS
        assert len(clipped["list"]) == MAX_RECORDED_ITEMS + 1
        assert clipped["password"] == "[REDACTED]"
        level = clipped["deep"]
        for _ in range(MAX_DEPTH - 2):
            level = level["d"]
        assert isinstance(level["d"], str) and level["d"].startswith("…[nested")
