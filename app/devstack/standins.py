"""HTTP stand-ins for GitHub's issue search and a Slack-style webhook, with fault injection.

`make run` uses them so that every tool works offline; tests use the same code
and flip `fault` to make them fail in the ways real upstreams do.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# Fault names both stand-ins understand.
FAULTS = frozenset({"500", "502", "429", "hang", "close", "redirect"})
HANG_S = 10.0  # longer than any test's upstream timeout

DEMO_ISSUES = [
    {"number": n, "title": title, "state": state, "labels": [{"name": label}], "repo": repo,
     "updated_at": f"2026-11-{n % 28 + 1:02d}T12:00:00Z"}
    for n, (title, state, label, repo) in enumerate(
        [
            ("Login fails after token rotation", "open", "bug", "acme/api"),
            ("Slow query on incidents dashboard", "open", "perf", "acme/web"),
            ("Crash on start with empty config", "closed", "bug", "acme/api"),
            ("Docs: explain attestation flow", "open", "docs", "acme/infra"),
            ("Flaky test in CI", "open", "bug", "acme/web"),
        ]
        * 12,
        start=1,
    )
]


async def _broken_body():
    yield b'{"total_count": 1, "items": ['
    raise ConnectionAbortedError("stand-in drops the connection mid-response")


async def _apply_fault(fault: str | None) -> Response | None:
    if fault == "hang":
        await asyncio.sleep(HANG_S)
    if fault == "close":
        return StreamingResponse(_broken_body(), media_type="application/json")
    if fault in ("500", "502"):
        return JSONResponse({"message": "stand-in failure"}, status_code=int(fault))
    if fault == "429":
        return JSONResponse({"message": "slow down"}, status_code=429, headers={"Retry-After": "7"})
    if fault == "redirect":
        return Response(status_code=302, headers={"Location": "http://198.51.100.7/steal"})
    return None


@dataclass
class GitHubStandIn:
    """Serves `GET /search/issues` for the accepted bearer tokens; records what it saw.

    Args:
        tokens: Bearer tokens it accepts (baseline and per-user).
        issues: The corpus to search; titles are matched case-insensitively.
    """

    tokens: set[str]
    issues: list[dict[str, Any]] = field(default_factory=lambda: list(DEMO_ISSUES))
    fault: str | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/search/issues", self._search)])

    def reset(self) -> None:
        self.fault = None
        self.requests.clear()

    async def _search(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self.requests.append({"token": token, "q": request.query_params.get("q", ""),
                              "api_version": request.headers.get("x-github-api-version")})
        if self.fault == "422-echo":  # GitHub explains a rejected query, echoing what it was sent
            return JSONResponse({"message": f"Validation Failed ({auth}) for {request.query_params.get('q', '')!r}"},
                                status_code=422)
        faulted = await _apply_fault(self.fault)
        if faulted is not None:
            return faulted
        if token not in self.tokens:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        per_page = min(int(request.query_params.get("per_page", "30")), 100)
        matches = _query_matcher(request.query_params.get("q", ""))
        found = [_as_github_item(issue) for issue in self.issues if matches(issue)]
        return JSONResponse({"total_count": len(found), "incomplete_results": False, "items": found[:per_page]},
                            headers={"x-ratelimit-remaining": "29"})


def _query_matcher(query: str) -> Callable[[dict[str, Any]], bool]:
    """GitHub's search qualifiers that the README uses (is:open|closed, state:, label:, repo:); words match titles.

    Qualifiers are ANDed, as on GitHub. Others (`is:issue`, `sort:`, `in:`) are ignored: the corpus
    holds only issues, and ordering is not part of what the stand-in imitates.
    """
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for term in query.split():
        name, colon, value = term.partition(":")
        value = value.strip('"').lower()
        if not colon:
            checks.append(lambda issue, word=term.lower(): word in issue["title"].lower())
        elif name in ("is", "state") and value in ("open", "closed"):
            checks.append(lambda issue, state=value: issue["state"] == state)
        elif name == "label":
            checks.append(lambda issue, label=value: label in {item["name"].lower() for item in issue["labels"]})
        elif name == "repo":
            checks.append(lambda issue, repo=value: issue["repo"].lower() == repo)
    return lambda issue: all(check(issue) for check in checks)


def _as_github_item(issue: dict[str, Any]) -> dict[str, Any]:
    return {**issue, "html_url": f"https://github.com/{issue['repo']}/issues/{issue['number']}"}


@dataclass
class WebhookSink:
    """Receives notifications on one secret path and honours `Idempotency-Key`.

    Args:
        path: The secret path (the part of a Slack webhook URL that is the credential).
        fault: One of FAULTS, or `timeout-after-receive` (records the post, then hangs).
    """

    path: str
    fault: str | None = None
    posts: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    echo: bool = False
    _seen_keys: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._receive, methods=["POST"])])

    def reset(self) -> None:
        self.fault = None
        self.posts.clear()
        self.attempts = 0

    async def _receive(self, request: Request) -> Response:
        if request.url.path != self.path:
            return JSONResponse({"error": "no such hook"}, status_code=404)
        self.attempts += 1
        if self.fault != "timeout-after-receive":
            faulted = await _apply_fault(self.fault)
            if faulted is not None:
                return faulted
        payload = await request.json()
        key = request.headers.get("idempotency-key")
        with self._lock:
            duplicate = key is not None and key in self._seen_keys
            if not duplicate:
                if key:
                    self._seen_keys.add(key)
                self.posts.append({"payload": payload, "idempotency_key": key})
                if self.echo:
                    # stderr: under `mcp-tee dev --transport stdio`, stdout is the MCP protocol
                    print(f"[webhook sink] #{payload.get('channel')}: {payload.get('text')}", file=sys.stderr,
                          flush=True)
        if self.fault == "timeout-after-receive":
            await asyncio.sleep(HANG_S)
        return Response("ok" if not duplicate else "duplicate ignored", status_code=200)
