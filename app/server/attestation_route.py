"""`GET /.well-known/mcp-attestation?nonce=…`: attestation before credentials, bounded because it is unauthenticated.

Threat model: a client must verify the server (and pin its TLS key) *before*
it sends a bearer token, so this route answers anyone. It therefore returns
only what the attestation proves: the MAA token for the caller's nonce and the
runtime JSON in clear (nonce, TLS key hash, tools digest of every registered
tool, audit key), never a secret, a session key or anything of a principal.
Each call costs an MAA round trip, so it is bounded in every dimension before
the sidecar is touched: the query string has a size cap, the nonce a strict
alphabet and length, a nonce is answered once per process, and two token
buckets (per source address, and global: at most ``global_per_second`` MAA
calls per second) answer 429 with ``Retry-After``. The per-source map is an
LRU with a size cap, so a spray of source addresses cannot grow it. Every
refusal takes one path (``_refuse``) with a fixed, input-free message.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse

from app.attestation.sidecar import SidecarError
from app.capability_policy import Quota
from app.middleware.quotas import BucketsByKey, TokenBucket, take_from_each

logger = logging.getLogger(__name__)

NONCE_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")
MAX_QUERY_BYTES = 256
MAX_TRACKED_SOURCES = 4096
MAX_REMEMBERED_NONCES = 16_384
DEFAULT_GLOBAL_PER_SECOND = 5.0
DEFAULT_PER_SOURCE_PER_MINUTE = 30.0
PER_SOURCE_BURST = 5
NO_STORE = {"Cache-Control": "no-store"}

# What a caller learns: where the evidence comes from, and the evidence. Nothing per principal.
Attest = Callable[[str], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RouteLimits:
    """How hard the pre-auth route may be used.

    Args:
        global_per_second: MAA round trips per second for everybody together (``MCP_ATTESTATION_PER_SECOND``).
        per_source_per_minute: Sustained calls per source address (``MCP_ATTESTATION_PER_SOURCE_PER_MINUTE``).
    """

    global_per_second: float = DEFAULT_GLOBAL_PER_SECOND
    per_source_per_minute: float = DEFAULT_PER_SOURCE_PER_MINUTE

    def __post_init__(self) -> None:
        if not (self.global_per_second > 0 and self.per_source_per_minute > 0):
            raise ValueError("attestation route limits must be positive")


class _Refused(Exception):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


def _refuse(status: int, message: str, retry_after_s: float | None = None) -> JSONResponse:
    """The one place this route denies: a fixed message, never an echo of the input."""
    headers = dict(NO_STORE)
    if retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class PreAuthAttestationRoute:
    """The Starlette endpoint (:meth:`handle`) for ``app.wire.tls_binding.ATTESTATION_ROUTE``.

    Args:
        attest: Makes and self-verifies a token for a nonce; returns the public evidence
            (``token``, ``runtime``, ``issuer``, ``maa_endpoint``). Raises ``SidecarError`` when the
            sidecar fails.
        limits: Rate limits.
        clock: Monotonic seconds (injectable so tests never sleep).

    Example:
        mcp.custom_route(ATTESTATION_ROUTE, methods=["GET"])(PreAuthAttestationRoute(attest).handle)
    """

    def __init__(self, attest: Attest, limits: RouteLimits = RouteLimits(), *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._attest = attest
        self._source_quota = Quota(per_minute=limits.per_source_per_minute, burst=PER_SOURCE_BURST)
        self._global = TokenBucket(Quota(per_minute=limits.global_per_second * 60,
                                         burst=max(1, int(limits.global_per_second))), clock)
        self._sources = BucketsByKey(clock, MAX_TRACKED_SOURCES)
        self._nonces: OrderedDict[str, None] = OrderedDict()
        self.maa_calls = 0

    async def handle(self, request: Request) -> JSONResponse:
        """The endpoint: admit, then attest; every refusal is a fixed message."""
        try:
            nonce = self._admit(request)
        except _Refused as refused:
            return _refuse(refused.status, str(refused), refused.retry_after_s)
        self.maa_calls += 1
        try:
            evidence = await self._attest(nonce)
        except SidecarError:
            logger.warning("pre-auth attestation: the sidecar failed")
            return _refuse(503, "attestation is unavailable right now")
        except ValueError:
            return _refuse(400, "nonce refused")
        return JSONResponse(evidence, headers=NO_STORE)

    def _admit(self, request: Request) -> str:
        """Size cap → nonce shape → per-source bucket → global bucket → single use; the sidecar only after all."""
        query = request.scope.get("query_string", b"")
        if len(query) > MAX_QUERY_BYTES:
            raise _Refused(414, f"query string longer than {MAX_QUERY_BYTES} bytes")
        nonces = request.query_params.getlist("nonce")
        if len(nonces) != 1 or not NONCE_SHAPE.fullmatch(nonces[0]):
            raise _Refused(400, "send exactly one nonce: 16-128 base64url characters")
        nonce = nonces[0]
        self._take_both(self._sources.bucket(request.client.host if request.client else "unknown", self._source_quota))
        if nonce in self._nonces:
            raise _Refused(409, "this nonce was already used; send a fresh one")
        self._nonces[nonce] = None
        if len(self._nonces) > MAX_REMEMBERED_NONCES:
            self._nonces.popitem(last=False)
        return nonce

    def _take_both(self, source: TokenBucket) -> None:
        """One token from the source's bucket and one from the server's, or neither (a refusal costs nothing)."""
        refused = take_from_each(source, self._global)
        if refused is not None:
            empty, wait = refused
            raise _Refused(429, f"too many attestation requests {'from this address' if empty == 0 else 'for this server'}",
                           wait)
