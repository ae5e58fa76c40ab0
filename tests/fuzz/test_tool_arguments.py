"""Hypothesis-generated arguments for every tool, through the real MCP client to a real server.

Property, for every tool and any arguments: the server answers with a result or a tool error
(never a 5xx or a JSON-RPC failure), logs no traceback, hides no internal error behind a
reference id, and no canary secret appears in any answer. Examples mix well-shaped values
(so the tools really run: GitHub search, the SQL guard and Postgres, the confirmation gate and
the webhook) with arbitrary JSON in every slot and unknown extra keys.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.canaries import assert_no_canary
from tests.support.mcp_client import ScriptedUser, mcp_session, text_of
from tests.support.server_process import ServerProcess

EXAMPLES_PER_TOOL = 40
FUZZ_SETTINGS = settings(max_examples=EXAMPLES_PER_TOOL, deadline=None, derandomize=True,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
INTERNAL_ERROR = "internal error (ref"

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
sql_fragments = st.sampled_from(["SELECT", "id", "title", "FROM", "issues", "incidents", "WHERE", "state", "=",
                                 "'open'", "LIMIT", "1", "UNION", "ALL", ";", "--", "/*", "*/", "DELETE", "(", ")",
                                 "pg_sleep(1)", "generate_series(1, 3)", "VALUES", "$$", "'", "\"", ",", "*"])
plausible = {
    "github_search_issues": {
        "query": st.text(min_size=1, max_size=60) | st.sampled_from(["login", "bug", "is:open label:bug", "flaky"]),
        "repo": st.sampled_from(["acme/api", "acme/web", "x/y"]) | st.from_regex(r"\A[a-z]{1,5}/[a-z.]{1,5}\Z"),
        "max_results": st.integers(min_value=-5, max_value=60),
    },
    "query_database": {
        "sql": st.lists(sql_fragments, min_size=1, max_size=10).map(" ".join) | st.text(max_size=80),
        "max_rows": st.integers(min_value=-2, max_value=1100),
    },
    "send_notification": {
        "message": st.text(min_size=1, max_size=80),
        "channel": st.sampled_from(["general", "ops", "Bad Channel", ""]) | st.from_regex(r"\A[a-z0-9._-]{1,10}\Z"),
        "urgency": st.sampled_from(["low", "normal", "high", "critical", "panic"]),
    },
    "attestation_status": {
        "nonce": st.from_regex(r"\A[A-Za-z0-9_-]{10,40}\Z") | st.text(max_size=20),
    },
}


def arguments_for(tool: str) -> st.SearchStrategy[dict]:
    """Each known argument either absent, plausible or any JSON; sometimes an unknown key too."""
    known = st.fixed_dictionaries({}, optional={name: strategy | json_values for name, strategy in plausible[tool].items()})
    extra = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda key: key not in plausible[tool]),
                            json_values, max_size=1)
    return st.tuples(known, extra).map(lambda parts: {**parts[1], **parts[0]})


class PersistentSession:
    """One MCP session held open across hypothesis examples, on a private event loop.

    A long-lived owner task enters (and later exits) the client's context managers, since anyio
    requires that of one task; each example's call runs as its own task on the same loop.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)

    async def _open(self):
        self._done = asyncio.Event()
        opened: asyncio.Future = asyncio.get_running_loop().create_future()

        async def owner() -> None:
            async with mcp_session(self._url, user=ScriptedUser("accept")) as session:
                opened.set_result(session)
                await self._done.wait()

        self._owner = asyncio.create_task(owner())
        await asyncio.wait([self._owner, opened], return_when=asyncio.FIRST_COMPLETED)
        if not opened.done():
            await self._owner  # re-raises why the session could not open
        return opened.result()

    def __enter__(self) -> "PersistentSession":
        self.session = self._runner.run(self._open())
        return self

    def call(self, tool: str, arguments: dict):
        return self._runner.run(self.session.call_tool(tool, arguments))

    def __exit__(self, *exc) -> None:
        async def close() -> None:
            self._done.set()
            await self._owner

        self._runner.run(close())
        self._runner.close()


@pytest.fixture(scope="module")
def fuzz_server(baseline_env, tmp_path_factory):
    log_dir = tmp_path_factory.mktemp("fuzz")
    process = ServerProcess({**baseline_env, "MCP_AUDIT_LOG": str(log_dir / "audit.jsonl")}, log_dir=log_dir)
    yield process.start()
    process.stop()


@pytest.fixture(scope="module")
def client(fuzz_server):
    with PersistentSession(fuzz_server.url) as client:
        yield client


def check_answer(server: ServerProcess, client: PersistentSession, tool: str, arguments: dict):
    """One example; `call_tool` raises on a 5xx or a JSON-RPC error, which fails the property."""
    result = client.call(tool, arguments)
    answer = text_of(result) + json.dumps(result.structured_content or {})
    assert INTERNAL_ERROR not in answer, f"{tool} hit an unhandled exception: {answer[:200]}"
    assert "Traceback" not in answer
    assert_no_canary([answer], f"{tool}'s answer")
    assert server.alive(), f"the server died on {tool}"
    return result


class TestEveryToolSurvivesArbitraryArguments:
    @FUZZ_SETTINGS
    @given(arguments=arguments_for("github_search_issues"))
    def test_github_search_issues(self, fuzz_server, client, arguments):
        check_answer(fuzz_server, client, "github_search_issues", arguments)

    @FUZZ_SETTINGS
    @given(arguments=arguments_for("query_database"))
    def test_query_database(self, fuzz_server, client, arguments):
        check_answer(fuzz_server, client, "query_database", arguments)

    @FUZZ_SETTINGS
    @given(arguments=arguments_for("attestation_status"))
    def test_attestation_status(self, fuzz_server, client, arguments):
        check_answer(fuzz_server, client, "attestation_status", arguments)

    @FUZZ_SETTINGS
    @given(arguments=arguments_for("send_notification"))
    def test_send_notification_posts_once_per_success_and_never_otherwise(self, fuzz_server, client, webhook_sink, arguments):
        before = len(webhook_sink.posts)
        result = check_answer(fuzz_server, client, "send_notification", arguments)
        assert len(webhook_sink.posts) - before == (0 if result.is_error else 1)


class TestServerLog:
    def test_no_traceback_and_no_canary_after_fuzzing(self, fuzz_server):
        """Runs after the fuzzers in this module: the whole log must be clean."""
        output = fuzz_server.output()
        assert "Traceback" not in output and INTERNAL_ERROR not in output
        assert_no_canary([output], "the server's logs after fuzzing")
