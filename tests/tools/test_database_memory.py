"""What `query_database` remembers of a statement: the guard's admission per caller (not a delegate's), and
nothing on the database server, where a cached plan would be shared by every caller (real Postgres, in process)."""

from __future__ import annotations

from fastmcp import Client, FastMCP

from app.auth.principal import Principal
from app.config import Settings
from app.secrets.env import load_env_secrets
from app.tools import database
from app.tools.server_state import ServerState
from app.upstreams.postgres import ReadOnlyDatabase

SQL = "SELECT id FROM issues WHERE id = 1"


async def _call_twice(postgres, tmp_path, principal: Principal) -> None:
    state = ServerState(settings=Settings(audit_log=str(tmp_path / "audit.jsonl")), secrets=load_env_secrets({}),
                        database=ReadOnlyDatabase(postgres.reader_dsn), principals=lambda: principal)
    mcp = FastMCP("database-memory")
    database.register(mcp, state)
    try:
        async with Client(mcp) as client:
            for _ in range(2):
                result = await client.call_tool("query_database", {"sql": SQL})
                assert result.structured_content["columns"] == ["id"]
    finally:
        await state.database.close()


async def test_a_callers_repeated_statement_is_checked_once(postgres, tmp_path, guard_parses):
    await _call_twice(postgres, tmp_path, Principal("alice", frozenset({"mcp:read"})))
    assert guard_parses == [SQL]


async def test_a_delegates_statements_are_checked_every_time(postgres, tmp_path, guard_parses):
    # It carries alice's subject: a remembered answer would tell it, by its speed, what alice ran.
    delegate = Principal("alice", frozenset({"mcp:read"}), delegation=object())
    await _call_twice(postgres, tmp_path, delegate)
    assert guard_parses == [SQL, SQL]


async def test_a_repeated_statement_is_never_prepared_on_the_server(postgres):
    database = ReadOnlyDatabase(postgres.reader_dsn, pool_size=1)  # one connection: every run lands on it
    try:
        for _ in range(8):  # psycopg's default prepares a text on its fifth run
            await database.query(SQL, max_rows=5)
        prepared = await database.query("SELECT statement FROM pg_prepared_statements", max_rows=50)
    finally:
        await database.close()
    statements = [statement for (statement,) in prepared.rows]
    assert statements and not any(SQL in statement for statement in statements)  # only the module's own
