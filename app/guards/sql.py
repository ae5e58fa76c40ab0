"""Read-only SQL guard for `query_database`: admits one SELECT-family statement, refuses the rest.

Threat model:
    The caller (an agent, possibly steered by prompt injection) writes arbitrary SQL. The guard
    parses it with PostgreSQL's own parser (pglast 8.x wraps libpg_query), so what it inspects is
    exactly what the server will parse, not a regex's guess: comments, string literals,
    dollar-quoted bodies and unicode-escaped identifiers (``U&"\\0070g_sleep"``) are resolved
    before any rule looks at them.

    A *write* is any statement other than SELECT / WITH ... SELECT / VALUES / TABLE, anywhere in
    the tree: stacked statements, data-modifying CTEs (INSERT/UPDATE/DELETE/MERGE inside WITH),
    ``SELECT ... INTO`` (creates a table), and row-locking clauses (FOR UPDATE / NO KEY UPDATE /
    SHARE / KEY SHARE), which take locks other sessions wait on. EXPLAIN is refused outright:
    EXPLAIN ANALYZE executes its statement, and plain EXPLAIN is not worth a special case.

    A *dangerous* function is one that a SELECT can call to escape the read-only box: read server
    files, touch large objects, open connections (dblink, http), sleep or take advisory locks
    (DoS), signal backends, change settings, advance sequences, notify, reset statistics, drive
    WAL / backup / replication, or execute SQL held in a string (query_to_xml, ts_stat), which
    would hide a call from this guard. Names are checked wherever the grammar puts a function
    name: calls in expressions, in FROM (including ROWS FROM and LATERAL), and TABLESAMPLE
    methods. Only the last name component counts, so ``pg_catalog.pg_sleep`` and
    ``any_schema.pg_sleep`` are both refused, and the match ignores case on purpose: a quoted
    ``"PG_SLEEP"`` names a different (normally nonexistent) function in Postgres, but refusing a
    look-alike costs nothing and a case-sensitive rule would be one more thing to get right.
    Operators (``OPERATOR(schema.op)``) and attribute notation (``t.f`` meaning ``f(t)``) are not
    checked: the latter only resolves functions of one composite argument, which none of the
    denied functions are.

    A *shared-session view* is a catalog view or function that shows other callers' activity.
    Every caller reaches Postgres as the server's one database role, so ``pg_stat_activity`` shows
    each pooled connection's running statement, literals included, to every other caller;
    ``pg_locks`` shows which tables another caller is reading; the statistics views' counters move
    with other callers' reads (an index fetch tells whether another caller's lookup found a row).
    Views are matched on their unqualified name (or prefix) wherever the grammar puts a relation
    (FROM, JOIN, TABLE, subqueries, CTE bodies), ignoring case like functions; a caller's own CTE
    of the same name is refused too, which costs nothing. ``setseed`` is refused because the seed
    outlives the transaction on a pooled connection and would fix the next caller's ``random()``.

    Not covered here, and handled by execution instead: resource use of legal queries (huge
    joins, recursive CTEs, ``generate_series``), which a statement timeout and a row cap bound,
    and which tables the caller may read, which the database role decides.

    The function list matters even under READ ONLY: on Postgres 15 a read-only transaction still
    lets a privileged role run lo_import, pg_read_file, pg_notify, set_config, pg_sleep and
    session-level advisory locks, and lets COPY write a file.

    This module is defense in depth. The query still runs in a READ ONLY transaction with
    ``SET LOCAL`` timeouts, under a least-privilege role. The guard fails closed: a parse failure,
    an unknown shape or an unexpected exception inside the guard is a refusal. Every refusal
    takes one path, ``_reject``, which logs the reason (never the SQL, which may carry data) and
    raises ``SqlRejected`` with a short message that is safe to show the caller. The tree walk is
    iterative, so deeply nested input cannot raise ``RecursionError`` here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NoReturn

import pglast
from pglast import ast
from pglast.enums import SetOperation

from app.errors import CapabilityDenied, deny

logger = logging.getLogger(__name__)

# Longest SQL text accepted, in characters; checked before the parser sees anything.
MAX_SQL_CHARS = 20_000

# The one statement node allowed; SELECT, WITH ... SELECT, VALUES and TABLE all parse to it.
ALLOWED_STATEMENT = ast.SelectStmt

# Statements that write data, named in refusals because a CTE can smuggle them into a SELECT.
DATA_MODIFYING_STATEMENTS = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})

# --- Denied functions, grouped by threat; matched on the lower-cased last name component. ---

# File-system reads and writes on the database server (core and adminpack).
FILE_ACCESS_FUNCTIONS = frozenset({
    "pg_read_file", "pg_read_binary_file", "pg_stat_file", "pg_ls_dir",
    "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
    "pg_hba_file_rules", "pg_ident_file_mappings", "pg_show_all_file_settings",
})
# Large objects: lo_import/lo_export reach server files; the lo_* family is denied by prefix below.
LARGE_OBJECT_FUNCTIONS = frozenset({"loread", "lowrite"})
# Network egress and SQL run in another session, which escapes the READ ONLY transaction.
NETWORK_FUNCTIONS = frozenset({
    "http", "http_get", "http_post", "http_put", "http_patch", "http_delete", "http_head",
    "pg_background_launch",
})
# Denial of service: sleeping and cache flooding (advisory locks are denied by prefix below).
DOS_FUNCTIONS = frozenset({"pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_prewarm"})
# Server administration: signals, reloads, settings, memory dumps to the server log.
ADMIN_FUNCTIONS = frozenset({
    "pg_cancel_backend", "pg_terminate_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_promote", "set_config", "pg_log_backend_memory_contexts", "pg_log_standby_snapshot",
    "pg_import_system_collations", "pg_nextoid",
})
# State changes a READ ONLY transaction does not stop or that leak across sessions.
STATE_CHANGING_FUNCTIONS = frozenset({
    "nextval", "setval", "pg_notify", "pg_current_xact_id", "txid_current",
    "setseed",  # the seed outlives the transaction: it would fix the next caller's random()
    "pg_stat_statements_reset", "brin_summarize_new_values", "brin_summarize_range",
    "brin_desummarize_range", "gin_clean_pending_list",
})
# WAL, backup and replication control.
WAL_FUNCTIONS = frozenset({
    "pg_switch_wal", "pg_switch_xlog", "pg_create_restore_point", "pg_backup_start",
    "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_wal_replay_pause",
    "pg_wal_replay_resume", "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot", "pg_drop_replication_slot",
    "pg_copy_physical_replication_slot", "pg_copy_logical_replication_slot",
})
# Functions that execute SQL given as a string, which this guard cannot see into.
DYNAMIC_SQL_FUNCTIONS = frozenset({"ts_stat", "ts_rewrite"})
# Functions that show other sessions' statements, locks or memory (what the views below are built
# on). The statistics functions (`pg_stat_get_*`) are denied by prefix below.
SESSION_ACTIVITY_FUNCTIONS = frozenset({
    "pg_stat_statements", "pg_stat_statements_info", "pg_prepared_statement", "pg_cursor", "pg_lock_status",
    "pg_blocking_pids", "pg_safe_snapshot_blocking_pids", "pg_get_backend_memory_contexts", "pg_current_logfile",
})

DENIED_FUNCTIONS = (
    FILE_ACCESS_FUNCTIONS | LARGE_OBJECT_FUNCTIONS | NETWORK_FUNCTIONS | DOS_FUNCTIONS
    | ADMIN_FUNCTIONS | STATE_CHANGING_FUNCTIONS | WAL_FUNCTIONS | DYNAMIC_SQL_FUNCTIONS
    | SESSION_ACTIVITY_FUNCTIONS
)

# Catalog views that show other sessions' statements, locks or memory, matched on the lower-cased
# unqualified relation name; the statistics views go by prefix below.
SESSION_ACTIVITY_RELATIONS = frozenset({
    "pg_stat_activity", "pg_stat_statements", "pg_stat_statements_info", "pg_prepared_statements", "pg_cursors",
    "pg_locks", "pg_backend_memory_contexts",
})
# Statistics views: their counters move with other callers' reads (an index fetch shows whether
# another caller's lookup found a row), and several list every connection's process id.
SESSION_ACTIVITY_RELATION_PREFIXES = frozenset({"pg_stat_", "pg_statio_"})

# Whole families, denied by name prefix so that new members are covered too.
DENIED_FUNCTION_PREFIXES = frozenset({
    "pg_read_", "pg_ls_",                                   # file access
    "lo_", "dblink",                                         # large objects, remote SQL
    "pg_advisory", "pg_try_advisory",                        # locks (DoS)
    "pg_stat_reset",                                         # statistics reset
    "pg_stat_get_",                                          # other sessions' statements and counters
    "pg_replication_", "pg_logical_",                        # replication
    "query_to_xml", "table_to_xml", "cursor_to_xml",         # run SQL / dump whole tables
    "schema_to_xml", "database_to_xml",
})

# Refusal messages used in more than one place.
_SAFE_FAILURE = "the query could not be checked; simplify it and retry"
_ONLY_SELECT = "only a read-only SELECT statement is allowed (SELECT, WITH ... SELECT, VALUES, TABLE)"


class SqlRejected(CapabilityDenied):
    """The guard refused the SQL; the message says why and never quotes the SQL.

    Args:
        reason: A short, caller-safe explanation built only from this module's constants.
    """

    layer = "sql_guard"

    def __init__(self, reason: str, *, layer: str | None = None) -> None:
        super().__init__(reason, layer=layer)
        self.reason = reason


@dataclass(frozen=True)
class GuardedQuery:
    """A statement the guard admitted, ready for the read-only executor.

    Args:
        sql: The SQL text exactly as submitted.
        statement: The one statement's own text, without the `;` separators or anything around
            them, so the executor can embed it as a subquery.
        statement_kind: ``select``, ``values``, ``union``, ``intersect`` or ``except``.
        fingerprint: pglast's query fingerprint (16 hex digits). It ignores literal values, so
            the audit log can record and group statements without recording, or letting anyone
            brute-force, the data inside them.

    Example:
        >>> guard_sql("SELECT id FROM issues WHERE state = 'open'").statement_kind
        'select'
    """

    sql: str
    statement: str
    statement_kind: str
    fingerprint: str


def guard_sql(sql: str) -> GuardedQuery:
    """Admit `sql` only if it is one read-only SELECT-family statement with no denied function.

    Checks run in a fixed order: type and size cap, NUL bytes, parse, exactly one statement,
    statement kind, then a walk over the whole tree.

    Raises:
        SqlRejected: On any refusal, including a parse error or a failure inside the guard.
    """
    try:
        return _guard(sql)
    except SqlRejected:
        raise
    except Exception as exc:  # Fail closed: a guard that crashed has not approved anything.
        _reject(_SAFE_FAILURE, exc)


def _guard(sql: str) -> GuardedQuery:
    if not isinstance(sql, str):
        _reject("the query must be a string")
    if len(sql) > MAX_SQL_CHARS:
        _reject(f"the query is longer than {MAX_SQL_CHARS} characters")
    if "\x00" in sql:
        _reject("the query contains a NUL byte")
    try:
        raw_statements = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        # The parser's message quotes the SQL; only the position is safe to echo.
        _reject(f"the query is not valid PostgreSQL (syntax error at position {_location(exc)})", exc)
    if not raw_statements:
        _reject("the query is empty")
    if len(raw_statements) != 1:
        _reject("exactly one SQL statement is allowed; remove the extra ';'-separated statements")
    raw = raw_statements[0]
    statement = raw.stmt
    if not isinstance(statement, ALLOWED_STATEMENT):
        _reject(_ONLY_SELECT)
    _check_tree(statement)
    return GuardedQuery(
        sql=sql,
        # pglast reports character offsets; a length of 0 means "to the end of the text".
        statement=sql[raw.stmt_location:raw.stmt_location + raw.stmt_len] if raw.stmt_len else sql[raw.stmt_location:],
        statement_kind=_statement_kind(statement),
        fingerprint=pglast.parser.fingerprint(sql),
    )


def _check_tree(root: ast.Node) -> None:
    """Visit every node below `root` with an explicit stack, refusing the first forbidden one."""
    stack: list[object] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, (tuple, list)):
            stack.extend(item)
        elif isinstance(item, ast.Node):
            _check_node(item)
            stack.extend(getattr(item, slot, None) for slot in type(item).__slots__)


def _check_node(node: ast.Node) -> None:
    kind = type(node).__name__
    if kind in DATA_MODIFYING_STATEMENTS:
        _reject("data-modifying statements (INSERT, UPDATE, DELETE, MERGE) are not allowed, even inside WITH")
    if kind.endswith("Stmt") and not isinstance(node, ALLOWED_STATEMENT):
        # Fail closed: today's grammar nests only DML in a SELECT; refuse anything a later one adds.
        _reject(_ONLY_SELECT)
    if isinstance(node, ast.IntoClause):
        _reject("SELECT ... INTO is not allowed; it creates a table")
    if isinstance(node, ast.LockingClause):
        _reject("row-locking clauses (FOR UPDATE / FOR SHARE) are not allowed")
    if isinstance(node, ast.RangeVar) and isinstance(node.relname, str):
        _check_relation_name(node.relname.casefold())
    if isinstance(node, ast.FuncCall):
        _check_function_name(node.funcname)
    elif isinstance(node, ast.RangeTableSample):
        _check_function_name(node.method)


def _check_function_name(name_parts: tuple[ast.Node, ...] | None) -> None:
    if not name_parts or not isinstance(name_parts[-1], ast.String):
        _reject(_SAFE_FAILURE)  # Fail closed: a call whose name we cannot read is not approved.
    name = name_parts[-1].sval.casefold()
    if name in DENIED_FUNCTIONS:
        _reject(f"function {name} is not allowed")
    for prefix in DENIED_FUNCTION_PREFIXES:
        if name.startswith(prefix):
            # Echo the prefix, not the name: past the prefix the name is caller-chosen text.
            _reject(f"functions named {prefix}* are not allowed")


def _check_relation_name(name: str) -> None:
    if name in SESSION_ACTIVITY_RELATIONS:
        _reject(f"reading {name} is not allowed: it shows other callers' activity")
    for prefix in SESSION_ACTIVITY_RELATION_PREFIXES:
        if name.startswith(prefix):
            # Echo the prefix, not the name: past the prefix the name is caller-chosen text.
            _reject(f"reading views named {prefix}* is not allowed: they show other callers' activity")


def _statement_kind(statement: ast.SelectStmt) -> str:
    if statement.op != SetOperation.SETOP_NONE:
        return statement.op.name.removeprefix("SETOP_").lower()
    return "values" if statement.valuesLists else "select"


def _location(exc: pglast.parser.ParseError) -> int | str:
    location = exc.args[1] if len(exc.args) > 1 else None
    return location if isinstance(location, int) else "unknown"


def _reject(reason: str, cause: BaseException | None = None) -> NoReturn:
    """Log and raise the single refusal; the cause's text may quote the SQL, so only its type is logged."""
    logger.info(
        "sql guard refused a query: %s%s",
        reason,
        f" (cause: {type(cause).__name__})" if cause is not None else "",
    )
    deny(reason, layer="sql_guard", error=SqlRejected)
