"""Slack-compatible webhook poster that delivers one confirmed notification at most once.

Threat model: the webhook URL *is* the credential (whoever knows it can post),
so it appears in no message, log or exception text: httpx errors are reduced to
their class name. Redirects are not followed, so the payload cannot be steered
to another host. A confirmed request is delivered at most once: the only retry
follows a connection that was never established (nothing was sent). A timeout
or error after sending is reported as "may have been delivered" and never
retried, because many receivers (Slack among them) ignore `Idempotency-Key`.
The key is still sent, one per confirmed request, for receivers that honour it.
"""

from __future__ import annotations

import httpx

from app.errors import UpstreamError
from app.telemetry.instruments import traced_upstream

UPSTREAM = "webhook"
MAX_ATTEMPTS = 2
MAYBE_DELIVERED = "the notification may have been delivered; check the channel before sending it again"
# Failures before any byte of the request left: the only ones safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


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

    @traced_upstream(UPSTREAM, "post")
    async def post(self, payload: dict, *, idempotency_key: str) -> int:
        """Deliver `payload` at most once; returns the receiver's status."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = await self._client.post(
                    self._url, json=payload, headers={"Idempotency-Key": idempotency_key}
                )
                break
            except _NOT_SENT as exc:
                if attempt == MAX_ATTEMPTS:
                    raise UpstreamError(UPSTREAM, f"the webhook is unreachable ({type(exc).__name__}); "
                                                  "the notification was not sent") from None
            except httpx.TimeoutException:
                raise UpstreamError(UPSTREAM, f"the webhook did not answer within {self._timeout_s:g} s; "
                                              f"{MAYBE_DELIVERED}") from None
            except httpx.HTTPError as exc:
                raise UpstreamError(UPSTREAM, f"the webhook connection failed ({type(exc).__name__}); "
                                              f"{MAYBE_DELIVERED}") from None
        status = response.status_code
        if 200 <= status < 300:
            return status
        if 300 <= status < 400:
            raise UpstreamError(UPSTREAM, f"the webhook answered with a redirect ({status}); not followed")
        if status == 429:
            raise UpstreamError(UPSTREAM, "the webhook is rate limiting (429); try again later")
        if status >= 500:
            raise UpstreamError(UPSTREAM, f"the webhook failed ({status}); {MAYBE_DELIVERED}")
        raise UpstreamError(UPSTREAM, f"the webhook rejected the notification ({status})")
