"""The shared definitions of runtime bytes, report data and the tools digest."""

from __future__ import annotations

import hashlib

import mcp.types
import pytest

from app.wire.runtime_data import canonical_json, expected_reportdata, tools_digest, validate_nonce

TOOLS = [
    {"name": "query_database", "description": "Run a read-only SQL query", "inputSchema": {"type": "object"}},
    {"name": "github_search_issues", "description": "Search issues", "inputSchema": {"type": "object",
                                                                                      "properties": {"q": {}}}},
]


class TestToolsDigest:
    def test_order_of_tools_and_keys_does_not_matter(self) -> None:
        shuffled = [{"inputSchema": t["inputSchema"], "description": t["description"], "name": t["name"]}
                    for t in reversed(TOOLS)]
        assert tools_digest(TOOLS) == tools_digest(shuffled)

    def test_mcp_tool_objects_digest_like_their_wire_json(self) -> None:
        objects = [mcp.types.Tool(name=t["name"], description=t["description"], inputSchema=t["inputSchema"])
                   for t in TOOLS]
        assert tools_digest(objects) == tools_digest(TOOLS)

    def test_extra_fields_are_ignored_but_descriptions_count(self) -> None:
        annotated = [{**t, "annotations": {"readOnlyHint": True}} for t in TOOLS]
        assert tools_digest(annotated) == tools_digest(TOOLS)
        changed = [{**TOOLS[0], "description": "Run ANY SQL"}, TOOLS[1]]
        assert tools_digest(changed) != tools_digest(TOOLS)

    def test_a_tool_without_schema_is_refused(self) -> None:
        with pytest.raises(ValueError):
            tools_digest([{"name": "x"}])


class TestReportData:
    def test_is_sha256_of_the_bytes_then_32_zero_bytes(self) -> None:
        raw = canonical_json({"nonce": "n"})
        assert expected_reportdata(raw) == hashlib.sha256(raw).hexdigest() + "00" * 32
        assert expected_reportdata({"nonce": "n"}) == expected_reportdata(raw)

    def test_canonical_json_is_compact_and_sorted(self) -> None:
        assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()


class TestNonce:
    def test_a_good_nonce_passes(self) -> None:
        assert validate_nonce("0123456789abcdef") == "0123456789abcdef"

    @pytest.mark.parametrize("nonce", [None, 12345678, "short", "n" * 129, "new\nline-nonce"])
    def test_bad_nonces_are_refused(self, nonce: object) -> None:
        with pytest.raises(ValueError):
            validate_nonce(nonce)
