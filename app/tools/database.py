"""`query_database`: one guarded, read-only SELECT against Postgres; rows are third-party data."""

from __future__ import annotations

from typing import Annotated

from fastmcp import FastMCP
from fastmcp.tools.base import ToolResult
from mcp_types import ToolAnnotations
from pydantic import Field

from app.state import ServerState
from app.tools.sql_guard import MAX_SQL_CHARS, guard_sql
from app.capabilities.untrusted import untrusted_result

MAX_ROWS_LIMIT = 1000


def register(mcp: FastMCP, state: ServerState) -> None:
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True, openWorldHint=False))
    async def query_database(
        sql: Annotated[str, Field(min_length=1, max_length=MAX_SQL_CHARS, description="One SELECT/WITH/VALUES/TABLE statement")],
        max_rows: Annotated[int, Field(ge=1, le=MAX_ROWS_LIMIT)] = 100,
    ) -> ToolResult:
        """Run one read-only SQL query (SELECT, WITH, VALUES or TABLE) and return at most max_rows rows."""
        guarded = guard_sql(sql)  # raises SqlRejected, a clear InvalidArgument
        result = await state.database.query(guarded.sql, max_rows=max_rows)
        return untrusted_result(
            {
                "columns": result.columns,
                "rows": result.rows,
                "row_count": len(result.rows),
                "truncated": result.truncated,
                "truncated_reason": result.truncated_reason,
                "statement_fingerprint": guarded.fingerprint,
            }
        )
