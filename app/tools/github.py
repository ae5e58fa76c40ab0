"""`github_search_issues`: read-only issue search; results are third-party text."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from app.secrets import GITHUB_TOKEN
from app.tools.caller_state import caller_state_key
from app.tools.spec import ToolSpec
from app.tools.server_state import ServerState

MAX_QUERY_CHARS = 256  # GitHub's own limit for `q`
REPO_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"


def register(mcp: FastMCP, state: ServerState) -> None:
    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=True))
    async def github_search_issues(
        ctx: Context,
        query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="GitHub search syntax")],
        repo: Annotated[str | None, Field(pattern=REPO_PATTERN, description="owner/name to search in")] = None,
        max_results: Annotated[int, Field(ge=1, le=50)] = 10,
    ) -> dict:
        """Search GitHub issues and pull requests. Titles and labels are untrusted third-party text."""
        q = f"{query} repo:{repo}" if repo else query
        # Layer 2 first: a user's own token, sealed to this attested session, beats the baseline.
        owned = caller_state_key(ctx, state.principals().subject)
        token = state.sessions.credential(owned, "github_token") or state.secrets.get(GITHUB_TOKEN)
        issues, total = await state.github.search_issues(q, token=token, per_page=max_results)
        return {"total_count": total, "issues": [asdict(issue) for issue in issues]}


SPEC = ToolSpec(name="github_search_issues", register=register, requires_secret=GITHUB_TOKEN, untrusted_output=True)
