"""One rule for every URL a credential or a trust decision rides on: https, or http only on loopback.

Threat model: a token, a webhook URL or a signing-key fetch sent over plain http to another host can
be read or answered by anyone on the path. Plain http is allowed only to this machine (stand-ins,
the emulator, tests). URLs that carry userinfo are refused: credentials belong in headers, never in
a URL that ends up in logs.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_HOSTNAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class UntrustedUrl(ValueError):
    """The URL is neither https nor loopback http, or it carries credentials."""


def is_loopback_host(host: str) -> bool:
    """True when `host` names only this machine (so binding or calling it exposes nothing)."""
    if host.lower() in LOOPBACK_HOSTNAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https_or_loopback(url: str, what: str, *, allow_file: bool = False) -> str:
    """Return `url` if it is https (or http on loopback, or file:// when allowed); else raise `UntrustedUrl`.

    Example:
        >>> require_https_or_loopback("http://127.0.0.1:9000/certs", "JWKS")
        'http://127.0.0.1:9000/certs'
    """
    parts = urlsplit(url)
    if allow_file and parts.scheme == "file":
        return url
    if parts.username or parts.password or not parts.hostname:
        raise UntrustedUrl(f"{what} URL must name a host and carry no credentials")
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
        return url
    raise UntrustedUrl(f"{what} URL must be https (http only on loopback)")


def _normalised(url: str) -> tuple[str, str, str]:
    parts = urlsplit(url.strip())
    return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/")


def same_url(left: str, right: str) -> bool:
    """Compare two URLs by scheme, authority and path (case-insensitive host, trailing slash ignored)."""
    return _normalised(left) == _normalised(right)
