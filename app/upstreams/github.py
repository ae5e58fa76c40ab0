"""GitHub REST client for issue search, holding the token so that it only ever reaches the API host.

Threat model: the token is the most valuable thing this client holds. It is
attached per request, only to URLs on the configured API origin, and redirects
are never followed (a 3xx to another host would otherwise carry the
`Authorization` header, or invite us to). Error messages name the status and
what to do, never the token, the request headers or the upstream body; the one
exception is a rejected query (422), whose explanation only GitHub can give: it
is quoted as a bounded excerpt of GitHub's `message`, which the error boundary
marks as untrusted and redacts (GitHub may echo what it was sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from app import __version__
from app.errors import InvalidArgument, UpstreamError
from app.telemetry.instruments import traced_upstream

UPSTREAM = "github"
GITHUB_API_VERSION = "2022-11-28"
_RATE_LIMIT_STATUSES = frozenset({403, 429})
_MAX_ERROR_DETAIL = 200


@dataclass(frozen=True)
class IssueSummary:
    number: int
    title: str
    state: str
    url: str
    updated_at: str
    labels: list[str]


class GitHubClient:
    """Searches issues on one GitHub API origin with a shared connection pool.

    Args:
        api_url: The API base URL (``https://api.github.com`` or a GHES ``/api/v3`` base).
        timeout_s: Total per-request timeout.

    Example:
        client = GitHubClient("https://api.github.com")
        issues, total = await client.search_issues("is:open label:bug", token=token, per_page=5)
    """

    def __init__(self, api_url: str, *, timeout_s: float = 10.0) -> None:
        self._base = api_url.rstrip("/")
        self._origin = _origin(self._base)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            follow_redirects=False,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": GITHUB_API_VERSION,
                "User-Agent": f"mcp-tee/{__version__}",
            },
        )
        self._timeout_s = timeout_s

    async def aclose(self) -> None:
        await self._client.aclose()

    @traced_upstream(UPSTREAM, "search_issues")
    async def search_issues(self, q: str, *, token: str, per_page: int) -> tuple[list[IssueSummary], int]:
        """Run `/search/issues`; returns the page of issues and GitHub's total count."""
        url = f"{self._base}/search/issues"
        if _origin(url) != self._origin:  # Fail closed: the token never leaves the configured origin.
            raise UpstreamError(UPSTREAM, "refusing to send the GitHub token to another host")
        try:
            response = await self._client.get(
                url,
                params={"q": q, "per_page": per_page},
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TimeoutException:
            raise UpstreamError(UPSTREAM, f"GitHub did not answer within {self._timeout_s:g} s; try again later") from None
        except httpx.HTTPError as exc:
            raise UpstreamError(UPSTREAM, f"GitHub is unreachable ({type(exc).__name__}); try again later") from None
        _raise_for_status(response)
        try:
            payload = response.json()
            items = payload["items"]
            issues = [_summarise(item) for item in items]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError(UPSTREAM, "GitHub returned a response that is not a search result") from None
        return issues, int(payload.get("total_count", len(issues)))


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or ""), parts.port


def _summarise(item: dict[str, Any]) -> IssueSummary:
    return IssueSummary(
        number=int(item["number"]),
        title=str(item.get("title", "")),
        state=str(item.get("state", "")),
        url=str(item.get("html_url", "")),
        updated_at=str(item.get("updated_at", "")),
        labels=[str(label.get("name", "")) for label in item.get("labels", []) if isinstance(label, dict)],
    )


def _raise_for_status(response: httpx.Response) -> None:
    status = response.status_code
    if status == 200:
        return
    if 300 <= status < 400:
        raise UpstreamError(UPSTREAM, f"GitHub answered with a redirect ({status}); not followed with the token")
    if status in _RATE_LIMIT_STATUSES and _is_rate_limited(response):
        raise UpstreamError(UPSTREAM, f"GitHub rate limit reached; it resets at {_reset_time(response)}")
    if status == 401:
        raise UpstreamError(UPSTREAM, "GitHub rejected the token (401); check that it is valid and not expired")
    if status == 403:
        raise UpstreamError(UPSTREAM, "GitHub refused the request (403); the token may lack access to this repository")
    if status == 422:
        raise InvalidArgument(f"GitHub rejected the search query: {_detail(response)}")
    if status >= 500:
        raise UpstreamError(UPSTREAM, f"GitHub is failing ({status}); try again later")
    raise UpstreamError(UPSTREAM, f"GitHub answered {status}")


def _is_rate_limited(response: httpx.Response) -> bool:
    headers = response.headers
    return response.status_code == 429 or headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers


def _reset_time(response: httpx.Response) -> str:
    headers = response.headers
    reset = headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return datetime.fromtimestamp(int(reset), tz=timezone.utc).isoformat(timespec="seconds")
    retry_after = headers.get("retry-after")
    if retry_after and retry_after.isdigit():
        return f"{retry_after} s from now"
    return "an unknown time (GitHub sent no reset header)"


def _detail(response: httpx.Response) -> str:
    try:
        message = str(response.json().get("message", ""))
    except ValueError:
        message = ""
    return message[:_MAX_ERROR_DETAIL] or f"status {response.status_code}"
