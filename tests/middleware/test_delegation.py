"""The delegation middleware's facts: omitted arguments take the tool's real defaults; unreadable ones are refused."""

from __future__ import annotations

import pytest

from app.delegation.errors import CapabilityRefused
from app.middleware.delegation import call_facts

QUERY_SCHEMA = {"properties": {"sql": {"type": "string"}, "max_rows": {"type": "integer", "default": 100}}}
NOTIFY_SCHEMA = {"properties": {"message": {"type": "string"}, "channel": {"type": "string", "default": "general"}}}


class TestCallFacts:
    def test_omitted_max_rows_is_the_tools_default(self) -> None:
        facts = call_facts("query_database", {"sql": "SELECT * FROM issues"}, QUERY_SCHEMA)
        assert facts.max_rows == 100 and facts.tables == {"issues"}

    def test_omitted_channel_is_the_tools_default(self) -> None:
        assert call_facts("send_notification", {"message": "hi"}, NOTIFY_SCHEMA).channel == "general"

    def test_tables_come_from_the_parse_tree(self) -> None:
        sql = "WITH t AS (SELECT * FROM secrets) SELECT * FROM t JOIN issues USING (id)"
        assert call_facts("query_database", {"sql": sql}, QUERY_SCHEMA).tables == {"secrets", "issues"}

    def test_tools_without_such_arguments_state_none(self) -> None:
        facts = call_facts("github_search_issues", {"query": "is:open"}, {"properties": {"query": {}}})
        assert (facts.tables, facts.max_rows, facts.channel) == (frozenset(), None, None)

    @pytest.mark.parametrize("arguments", [
        {"sql": "SELECT 1", "max_rows": "5"},
        {"sql": "SELECT 1", "max_rows": True},
        {"sql": ["SELECT 1"]},
        {"message": "hi", "channel": 7},
    ])
    def test_unreadable_facts_are_refused(self, arguments) -> None:
        with pytest.raises(CapabilityRefused, match="cannot be checked"):
            call_facts("any_tool", arguments, QUERY_SCHEMA)
