"""`relations_read`: every relation a query reads, so `table($name)` checks cannot be bypassed."""

from __future__ import annotations

import psycopg
import pytest

from app.guards.sql import SqlRejected
from app.guards.sql_relations import relations_read


class TestEveryRelationIsReported:
    @pytest.mark.parametrize("sql, expected", [
        ("SELECT * FROM issues", {"issues"}),
        ("TABLE issues", {"issues"}),
        ("SELECT * FROM issues i JOIN incidents USING (id)", {"issues", "incidents"}),
        ("SELECT * FROM issues, LATERAL (SELECT * FROM secrets s) x", {"issues", "secrets"}),
        ("SELECT (SELECT max(v) FROM secrets) FROM issues", {"issues", "secrets"}),
        ("SELECT * FROM issues WHERE id IN (SELECT id FROM secrets)", {"issues", "secrets"}),
        ("SELECT * FROM issues WHERE EXISTS (SELECT 1 FROM secrets)", {"issues", "secrets"}),
        ("SELECT id FROM issues UNION SELECT id FROM secrets", {"issues", "secrets"}),
        ("SELECT * FROM (SELECT * FROM (SELECT * FROM secrets) a) b", {"secrets"}),
        ("SELECT * FROM public.issues", {"public.issues"}),
        ('SELECT * FROM "Secrets"."Keys"', {"Secrets.Keys"}),
        ("SELECT * FROM open_issues_view", {"open_issues_view"}),
        ("SELECT 1", set()),
    ])
    def test_reports(self, sql: str, expected: set[str]) -> None:
        assert relations_read(sql) == expected


class TestCteNamesAreNotTables:
    def test_cte_name_is_not_reported_but_its_body_is(self) -> None:
        assert relations_read("WITH t AS (SELECT * FROM secrets) SELECT * FROM t") == {"secrets"}

    def test_cte_shadowing_a_table_reports_the_table_inside(self) -> None:
        assert relations_read("WITH issues AS (SELECT * FROM secrets) SELECT * FROM issues") == {"secrets"}

    def test_cte_name_used_in_a_nested_subquery_is_still_the_cte(self) -> None:
        sql = "WITH t AS (SELECT * FROM issues) SELECT * FROM (SELECT * FROM t) x WHERE EXISTS (SELECT 1 FROM t)"
        assert relations_read(sql) == {"issues"}

    def test_recursive_cte_refers_to_itself(self) -> None:
        sql = "WITH RECURSIVE r(n) AS (SELECT id FROM issues UNION SELECT n + 1 FROM r) SELECT * FROM r"
        assert relations_read(sql) == {"issues"}

    def test_earlier_sibling_is_visible_to_a_later_one(self) -> None:
        sql = "WITH a AS (SELECT * FROM issues), b AS (SELECT * FROM a) SELECT * FROM b"
        assert relations_read(sql) == {"issues"}


class TestNoLaundering:
    def test_later_sibling_name_in_an_earlier_cte_is_the_real_table(self) -> None:
        # Without RECURSIVE, `b` inside `a` resolves to the table b, not the CTE defined after it.
        sql = "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a"
        assert relations_read(sql) == {"b"}

    def test_cte_name_outside_its_with_is_the_real_table(self) -> None:
        sql = "SELECT * FROM (WITH t AS (SELECT 1) SELECT * FROM t) x, t"
        assert relations_read(sql) == {"t"}

    def test_qualified_name_is_never_a_cte(self) -> None:
        assert relations_read("WITH secrets AS (SELECT 1) SELECT * FROM public.secrets") == {"public.secrets"}

    def test_cte_inside_a_cte_does_not_leak_out(self) -> None:
        sql = "WITH a AS (WITH s AS (SELECT 1) SELECT * FROM s) SELECT * FROM a, s"
        assert relations_read(sql) == {"s"}

    def test_deep_nesting_does_not_crash(self) -> None:
        sql = "SELECT * FROM " + "(SELECT * FROM " * 200 + "secrets" + ") x" * 200
        assert relations_read(sql) == {"secrets"}


class TestRefusedSqlHasNoRelations:
    @pytest.mark.parametrize("sql", ["DELETE FROM issues", "WITH d AS (DELETE FROM issues RETURNING *) SELECT * FROM d",
                                     "not sql"])
    def test_guard_refusal_propagates(self, sql: str) -> None:
        with pytest.raises(SqlRejected):
            relations_read(sql)


class TestScopingMatchesPostgres:
    """The CTE scoping rules above, confirmed by the real server: a missing table errors, a CTE does not."""

    @pytest.mark.parametrize("sql, resolves_to_table", [
        ("WITH a AS (SELECT * FROM later_name), later_name AS (SELECT 1 AS x) SELECT * FROM a", True),
        ("WITH RECURSIVE a AS (SELECT * FROM later_name), later_name AS (SELECT 1 AS x) SELECT * FROM a", False),
        ("SELECT * FROM (WITH later_name AS (SELECT 1 AS x) SELECT * FROM later_name) s, later_name", True),
    ])
    def test_postgres_agrees(self, postgres, sql: str, resolves_to_table: bool) -> None:
        assert ("later_name" in relations_read(sql)) is resolves_to_table
        with psycopg.connect(postgres.reader_dsn) as connection:
            if resolves_to_table:
                with pytest.raises(psycopg.errors.UndefinedTable):
                    connection.execute(sql)
            else:
                connection.execute(sql)
