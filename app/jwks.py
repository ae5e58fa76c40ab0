"""One cache for signing-key sets (JWKS), shared by the OAuth resource server and the MAA verifier.

Threat model: whoever controls the key set controls which tokens verify. Keys come only from a URL
the caller configured, which must be https (http only on loopback; `file://` only where the caller
allows it, for the local dev issuer). Fetches send no credentials (no netrc, no proxies from the
environment), follow no redirects and read a bounded body. An unknown `kid` triggers at most one
refresh per interval, so a flood of forged kids cannot turn a verifier into a fetch amplifier;
concurrent callers share one in-flight fetch instead of queueing behind a lock. A failed refresh
keeps the keys already known. How a document becomes keys is the caller's `parse` function, so the
same cache serves plain JWKs (OAuth) and x5c certificate chains (MAA).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from app.urls import require_https_or_loopback

MAX_JWKS_BYTES = 256 * 1024
MAX_CACHED_URLS = 16
DEFAULT_REFRESH_INTERVAL_S = 30.0
DEFAULT_MAX_AGE_S = 3600.0
DEFAULT_FETCH_TIMEOUT_S = 5.0

KeyParser = Callable[[Mapping[str, Any]], dict[str, Any]]


class KeyUnavailable(Exception):
    """No key for the token's `kid` could be had from the configured JWKS; the message is safe to show."""


class _FetchFailed(Exception):
    pass


class JwksCache:
    """Per-URL signing-key cache, refreshed on an unknown `kid` (rate-limited) or when stale.

    Args:
        parse: Maps a JWKS document to `{kid: key}`; entries it cannot use are left out.
        refresh_interval_s: Minimum seconds between two fetches of the same URL.
        max_age_s: Keys older than this are refetched before use (a failed refetch keeps them).
        timeout_s: HTTP timeout per fetch.
        allow_file: Accept `file://` URLs (the local dev issuer's JWKS on disk).
        clock: Monotonic clock (injectable for tests).

    Example:
        >>> cache = JwksCache(parse_maa_jwks)
        >>> key = await cache.key_async("https://sharedeus.eus.attest.azure.net/certs", kid)  # doctest: +SKIP
    """

    def __init__(self, parse: KeyParser, *, refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S,
                 max_age_s: float = DEFAULT_MAX_AGE_S, timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
                 allow_file: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self._parse = parse
        self._refresh_interval_s = refresh_interval_s
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._allow_file = allow_file
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self.fetches = 0

    def _check(self, url: str) -> None:
        require_https_or_loopback(url, "JWKS", allow_file=self._allow_file)

    def _needs_fetch(self, url: str, kid: str) -> bool:
        last = self._fetched_at.get(url)
        if last is None:
            return True
        age = self._clock() - last
        return age >= self._max_age_s or (kid not in self._keys.get(url, {}) and age >= self._refresh_interval_s)

    def _client_options(self) -> dict[str, Any]:
        # trust_env=False: no proxy settings, no netrc credentials leak to the issuer.
        return {"timeout": self._timeout_s, "follow_redirects": False, "trust_env": False}

    def _store(self, url: str, status: int, body: bytes) -> None:
        if status != 200 or len(body) > MAX_JWKS_BYTES:
            raise _FetchFailed(f"JWKS fetch answered {status}")
        try:
            document = json.loads(body)
        except ValueError:
            raise _FetchFailed("JWKS is not JSON") from None
        if not isinstance(document, dict):
            raise _FetchFailed("JWKS is not a JSON object")
        if url not in self._keys and len(self._keys) >= MAX_CACHED_URLS:
            oldest = min(self._fetched_at, key=self._fetched_at.__getitem__)
            self._keys.pop(oldest, None)
            self._fetched_at.pop(oldest, None)
        self._keys[url] = self._parse(document)

    def _read_file(self, url: str) -> bytes:
        return Path(url2pathname(urlsplit(url).path)).read_bytes()

    def _resolve(self, url: str, kid: str, failure: str | None) -> Any:
        key = self._keys.get(url, {}).get(kid)
        if key is None:
            raise KeyUnavailable(failure or "no signing key with the token's kid at the configured issuer")
        return key

    def key(self, url: str, kid: str) -> Any:
        """The key for `kid` from `url`'s JWKS, fetching when unknown or stale (blocking)."""
        self._check(url)
        import httpx  # here, not at the top: it costs a CLI that never fetches (verify-token's refusals) 0.3 s

        failure = None
        if self._needs_fetch(url, kid):
            self._fetched_at[url] = self._clock()
            self.fetches += 1
            try:
                if urlsplit(url).scheme == "file":
                    self._store(url, 200, self._read_file(url))
                else:
                    with httpx.Client(**self._client_options()) as client:
                        response = client.get(url)
                    self._store(url, response.status_code, response.content)
            except (_FetchFailed, httpx.HTTPError, OSError) as exc:
                failure = str(exc) if isinstance(exc, _FetchFailed) else "JWKS fetch failed"
        return self._resolve(url, kid, failure)

    async def key_async(self, url: str, kid: str) -> Any:
        """Async twin of :meth:`key`; concurrent callers share one in-flight fetch per URL."""
        self._check(url)
        import httpx

        failure = None
        inflight = self._inflight.get(url)
        if inflight is None and self._needs_fetch(url, kid):
            self._fetched_at[url] = self._clock()
            self.fetches += 1
            inflight = self._inflight[url] = asyncio.get_running_loop().create_future()
            try:
                await self._fetch_async(url)
                inflight.set_result(None)
            except (_FetchFailed, httpx.HTTPError, OSError) as exc:
                failure = str(exc) if isinstance(exc, _FetchFailed) else "JWKS fetch failed"
                inflight.set_result(None)
            finally:
                self._inflight.pop(url, None)
        elif inflight is not None:
            await asyncio.shield(inflight)
        return self._resolve(url, kid, failure)

    async def _fetch_async(self, url: str) -> None:
        if urlsplit(url).scheme == "file":
            self._store(url, 200, await asyncio.to_thread(self._read_file, url))
            return
        import httpx

        async with httpx.AsyncClient(**self._client_options()) as client:
            response = await client.get(url)
        self._store(url, response.status_code, response.content)
