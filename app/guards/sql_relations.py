"""Every relation a guarded query reads, from PostgreSQL's own parse tree: the `table($name)` facts.

Threat model:
    A delegated capability may say "only these tables". The caller writes the SQL, so a table it
    may not read can hide in a CTE body, a subquery (in FROM, in WHERE, in the select list), a
    join, a set operation or a LATERAL item. This module walks the whole pglast tree (the same
    parser the guard and Postgres use) and reports every ``RangeVar``: tables, views and
    foreign tables alike, because a name in FROM is what the caller reads. A view is reported
    by its own name; what the view reads inside is the view owner's choice, so allowing a view
    means allowing what it shows.

    A CTE name is not a table, but a CTE must never launder one: a bare name counts as a CTE
    reference only where Postgres itself resolves it to that CTE. That is inside the WITH's
    main query, inside later sibling CTEs (and every sibling plus itself under RECURSIVE), and
    in subqueries nested there. Anywhere else the same name is the real table. A schema-qualified
    name is never a CTE. Mistakes here must over-report: reporting a CTE name as a table only
    makes a table check stricter, never looser.

    Names are reported as Postgres folds them (unquoted identifiers lower-cased by the parser,
    quoted ones exact), joined with dots when qualified: ``issues``, ``public.issues``. A
    qualified name does not match its bare form; a capability that means ``public.issues`` must
    say so. Functions in FROM are not relations and are not reported; the database role bounds
    what a function may read. The walk is iterative, so deep nesting cannot raise
    ``RecursionError``. Call this only on SQL that ``guard_sql`` admitted.
"""

from __future__ import annotations

import pglast
from pglast import ast

from app.guards.sql import guard_sql


def relations_read(sql: str) -> frozenset[str]:
    """The names of every table or view `sql` reads, after the read-only guard admitted it.

    Raises:
        SqlRejected: The guard refused the SQL (relations of a refused query do not matter).

    Example:
        >>> sorted(relations_read("WITH t AS (SELECT * FROM issues) SELECT * FROM t JOIN public.users u ON true"))
        ['issues', 'public.users']
    """
    guard_sql(sql)
    return _relations(pglast.parse_sql(sql)[0].stmt)


def _relations(root: ast.Node) -> frozenset[str]:
    found: set[str] = set()
    # Each entry: a subtree and the CTE names visible in it.
    stack: list[tuple[object, frozenset[str]]] = [(root, frozenset())]
    while stack:
        item, ctes = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend((child, ctes) for child in item)
        elif isinstance(item, ast.RangeVar):
            if item.schemaname or item.catalogname or item.relname not in ctes:
                found.add(_qualified_name(item))
        elif isinstance(item, ast.SelectStmt) and item.withClause is not None:
            stack.extend(_with_scopes(item, ctes))
        elif isinstance(item, ast.Node):
            stack.extend((getattr(item, slot, None), ctes) for slot in type(item).__slots__)
    return frozenset(found)


def _with_scopes(statement: ast.SelectStmt, outer: frozenset[str]) -> list[tuple[object, frozenset[str]]]:
    """Pair each part of a WITH ... statement with the CTE names Postgres resolves there."""
    with_clause = statement.withClause
    ctes = list(with_clause.ctes or ())
    body = [getattr(statement, slot, None) for slot in type(statement).__slots__ if slot != "withClause"]
    if not all(isinstance(cte, ast.CommonTableExpr) for cte in ctes):
        # Fail closed: a WITH entry of unknown shape; treat every bare name as a table.
        return [(ctes, frozenset()), (body, frozenset())]
    every = outer | {cte.ctename for cte in ctes}
    parts: list[tuple[object, frozenset[str]]] = [(body, every)]
    for index, cte in enumerate(ctes):
        # Without RECURSIVE a CTE sees only the siblings before it; a later one's name is the real table.
        visible = every if with_clause.recursive else outer | {earlier.ctename for earlier in ctes[:index]}
        parts.append((cte.ctequery, visible))
    return parts


def _qualified_name(relation: ast.RangeVar) -> str:
    return ".".join(part for part in (relation.catalogname, relation.schemaname, relation.relname) if part)
