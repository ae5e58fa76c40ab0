"""Slack-compatible webhook poster that delivers one confirmed notification at most once.

Threat model: the webhook URL *is* the credential (whoever knows it can post),
so it appears in no message, log or exception text: httpx errors are reduced to
their class name. Redirects are not followed, so the payload cannot be steered
to another host. Each confirmed request carries one `Idempotency-Key`; our own
retry after a timeout reuses it, so a receiver that honours the key never posts
twice even when the first attempt was received but its answer was lost.
"""

from __future__ import annotations

import httpx

from app.errors import UpstreamError

UPSTREAM = "webhook"
MAX_ATTEMPTS = 2
_RETRYABLE_STATUSES = frozenset({500, 502, 503, 504})


class WebhookClient:
    """Posts JSON payloads to one webhook URL.

    Args:
        url: The webhook URL (a secret).
        timeout_s: Per-attempt timeout.

    Example:
        hook = WebhookClient(url)
        await hook.post({"text": "deploy finished"}, idempotency_key="c0ffee")
    """

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)), follow_redirects=False
        )

    def __repr__(self) -> str:
        return "WebhookClient(url=<redacted>)"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(self, payload: dict, *, idempotency_key: str) -> int:
        """Deliver `payload`; returns the receiver's status. Retries once with the same key."""
        last_problem = "no attempt made"
        for _ in range(MAX_ATTEMPTS):
            try:
                response = await self._client.post(
                    self._url, json=payload, headers={"Idempotency-Key": idempotency_key}
                )
            except httpx.TimeoutException:
                last_problem = f"the webhook did not answer within {self._timeout_s:g} s"
                continue
            except httpx.HTTPError as exc:
                last_problem = f"the webhook is unreachable ({type(exc).__name__})"
                continue
            status = response.status_code
            if 200 <= status < 300:
                return status
            if status in _RETRYABLE_STATUSES:
                last_problem = f"the webhook failed ({status})"
                continue
            if 300 <= status < 400:
                raise UpstreamError(UPSTREAM, f"the webhook answered with a redirect ({status}); not followed")
            if status == 429:
                raise UpstreamError(UPSTREAM, "the webhook is rate limiting (429); try again later")
            raise UpstreamError(UPSTREAM, f"the webhook rejected the notification ({status})")
        raise UpstreamError(UPSTREAM, f"{last_problem}; the notification may not have been delivered")
