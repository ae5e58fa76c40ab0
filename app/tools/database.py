"""`query_database`: one guarded, read-only SELECT against Postgres; rows are third-party data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Any

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from mcp_types import ToolAnnotations
from pydantic import Field

from app.guards.admitted import AdmittedQueries
from app.guards.sql import MAX_SQL_CHARS
from app.secrets import DB_CONNECTION_STRING
from app.tools.spec import AuditSummary, ToolSpec
from app.tools.server_state import ServerState

MAX_ROWS_LIMIT = 1000


def register(mcp: FastMCP, state: ServerState) -> None:
    admitted = AdmittedQueries()  # per server: a caller's repeated statement is not parsed again

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False))
    async def query_database(
        sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT/WITH/VALUES/TABLE statement")],
        max_rows: Annotated[int, Field(ge=1, le=MAX_ROWS_LIMIT)] = 100,
    ) -> dict:
        """Run one read-only SQL query (SELECT, WITH, VALUES or TABLE) and return at most max_rows rows."""
        principal = state.principals()
        # A delegate carries its delegator's subject, so its calls are not remembered: their speed
        # would tell it which statements the delegator ran. Raises SqlRejected, a clear InvalidArgument.
        guarded = admitted.check(principal.subject if principal.delegation is None else None, sql)
        result = await state.database.query(guarded.statement, max_rows=max_rows)
        return {
            "columns": result.columns,
            "rows": result.rows,
            "row_count": len(result.rows),
            "truncated": result.truncated,
            "truncated_reason": result.truncated_reason,
            "statement_fingerprint": guarded.fingerprint,
        }


def audit_summary(args: Mapping[str, Any], result: ToolResult | None) -> dict[str, Any]:
    """The statement's SHA-256, its literal-free fingerprint and the row count; never its text."""
    sql = args.get("sql")
    structured = result.structured_content if result is not None else None
    structured = structured if isinstance(structured, dict) else {}
    return {
        # surrogatepass: a lone surrogate (valid JSON) must not cost the call its record.
        "sql_sha256": hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest() if isinstance(sql, str) else None,
        # Groups statements by shape without their literals (pglast's fingerprint).
        "sql_fingerprint": structured.get("statement_fingerprint"),
        "row_count": structured.get("row_count"),
    }


SPEC = ToolSpec(
    name="query_database",
    register=register,
    requires_secret=DB_CONNECTION_STRING,
    untrusted_output=True,
    audit_summary=AuditSummary(omit=frozenset({"sql"}), summarize=audit_summary),
)
