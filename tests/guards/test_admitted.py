"""The guard's memory of admissions: same verdicts, per caller, refusals always checked again."""

from __future__ import annotations

import logging

import pytest

from app.guards.admitted import REMEMBERED_MAX_CHARS, AdmittedQueries
from app.guards.sql import SqlRejected, guard_sql
from tests.guards.corpus import ATTACKS, MUST_ALLOW

SELECT = "SELECT id, title FROM issues WHERE id = 42"


class TestSameVerdicts:
    @pytest.mark.parametrize(("ident", "sql"), MUST_ALLOW, ids=[ident for ident, _ in MUST_ALLOW])
    def test_an_admitted_text_gets_the_guards_answer_both_times(self, ident: str, sql: str) -> None:
        memory = AdmittedQueries()
        assert memory.check("alice", sql) == guard_sql(sql)
        assert memory.check("alice", sql) == guard_sql(sql)

    @pytest.mark.parametrize(("ident", "sql"), ATTACKS, ids=[ident for ident, _ in ATTACKS])
    def test_an_attack_is_refused_every_time(self, ident: str, sql: str) -> None:
        memory = AdmittedQueries()
        for _ in range(2):
            with pytest.raises(SqlRejected):
                memory.check("alice", sql)

    def test_a_text_that_differs_only_in_a_literal_is_checked_on_its_own(self, guard_parses) -> None:
        memory = AdmittedQueries()
        memory.check("alice", "SELECT 1 AS a")
        with pytest.raises(SqlRejected, match="pg_sleep"):
            memory.check("alice", "SELECT pg_sleep(1) AS a")
        assert guard_parses == ["SELECT 1 AS a", "SELECT pg_sleep(1) AS a"]


class TestMemory:
    def test_a_repeated_admission_is_not_parsed_again(self, guard_parses) -> None:
        memory = AdmittedQueries()
        first = memory.check("alice", SELECT)
        assert memory.check("alice", SELECT) is first
        assert guard_parses == [SELECT]

    def test_a_refusal_is_never_remembered_so_each_one_is_logged(self, guard_parses, caplog) -> None:
        memory = AdmittedQueries()
        caplog.set_level(logging.INFO, logger="app.guards.sql")
        for _ in range(3):
            with pytest.raises(SqlRejected):
                memory.check("alice", "DELETE FROM issues")
        assert len(guard_parses) == 3
        assert sum("sql guard refused" in record.getMessage() for record in caplog.records) == 3

    def test_another_callers_admission_is_not_reused(self, guard_parses) -> None:
        # A shared memory would answer bob faster for a text alice ran, telling him she ran it.
        memory = AdmittedQueries()
        memory.check("alice", SELECT)
        memory.check("bob", SELECT)
        assert guard_parses == [SELECT, SELECT]

    def test_with_no_caller_nothing_is_remembered(self, guard_parses) -> None:
        memory = AdmittedQueries()
        memory.check(None, SELECT)
        memory.check(None, SELECT)
        assert guard_parses == [SELECT, SELECT]

    def test_one_caller_flooding_its_share_keeps_another_callers_entries(self, guard_parses) -> None:
        memory = AdmittedQueries(per_caller=2, total=3)
        memory.check("bob", SELECT)
        for number in range(10):
            memory.check("alice", f"SELECT {number}")
        guard_parses.clear()
        memory.check("bob", SELECT)
        assert guard_parses == []

    def test_a_text_past_the_remembered_length_is_checked_every_time(self, guard_parses) -> None:
        long_text = "SELECT 1 AS a" + " " * (REMEMBERED_MAX_CHARS - len("SELECT 1 AS a") + 1)
        memory = AdmittedQueries()
        memory.check("alice", long_text)
        memory.check("alice", long_text)
        assert guard_parses == [long_text, long_text]

    def test_a_non_string_is_refused_by_the_guard(self) -> None:
        with pytest.raises(SqlRejected, match="must be a string"):
            AdmittedQueries().check("alice", 42)  # type: ignore[arg-type]
