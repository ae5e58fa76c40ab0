"""The layer-2 credential payload an agent seals to an attested session, as both sides read it.

Sealed plaintext (canonical JSON, UTF-8)::

    {"kind": "github_token", "token": "<the user's token>", "ttl_s": 900}

``kind`` must be one of :data:`ALLOWED_CREDENTIAL_KINDS`; ``ttl_s`` is optional (default
:data:`DEFAULT_CREDENTIAL_TTL_S`) and capped at :data:`MAX_CREDENTIAL_TTL_S`. Validation messages
name the field, never its value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.wire.runtime_data import canonical_json

ALLOWED_CREDENTIAL_KINDS = frozenset({"github_token"})
PAYLOAD_FIELDS = frozenset({"kind", "token", "ttl_s"})
MAX_TOKEN_CHARS = 4096
DEFAULT_CREDENTIAL_TTL_S = 15 * 60
MAX_CREDENTIAL_TTL_S = 60 * 60


@dataclass(frozen=True, repr=False)
class CredentialPayload:
    """The opened plaintext of one sealed credential (never printed)."""

    kind: str
    token: str
    ttl_s: int

    def __repr__(self) -> str:
        return f"CredentialPayload(kind={self.kind!r}, ttl_s={self.ttl_s})"


def _payload(kind: Any, token: Any, ttl_s: Any) -> CredentialPayload:
    """Validate the fields; messages name the field, never its value."""
    if kind not in ALLOWED_CREDENTIAL_KINDS:
        raise ValueError(f"kind must be one of {sorted(ALLOWED_CREDENTIAL_KINDS)}")
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        raise ValueError(f"token must be a string of 1..{MAX_TOKEN_CHARS} characters")
    # A token ends up in an HTTP header: no whitespace, no control characters.
    if not all(c.isascii() and c.isprintable() and not c.isspace() for c in token):
        raise ValueError("token must be printable ASCII without whitespace")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s < 1:
        raise ValueError("ttl_s must be a positive whole number of seconds")
    return CredentialPayload(kind, token, min(ttl_s, MAX_CREDENTIAL_TTL_S))


def credential_payload(kind: str, token: str, ttl_s: int = DEFAULT_CREDENTIAL_TTL_S) -> bytes:
    """The plaintext an agent seals (canonical JSON); raises ``ValueError`` for a field the server would refuse."""
    payload = _payload(kind, token, ttl_s)
    return canonical_json({"kind": payload.kind, "token": payload.token, "ttl_s": payload.ttl_s})


def parse_credential_payload(plaintext: bytes) -> CredentialPayload:
    """Parse an opened blob; raises ``ValueError`` with a secret-free message."""
    try:
        document = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("sealed content is not a JSON credential object") from None
    if not isinstance(document, dict) or not {"kind", "token"} <= set(document) <= PAYLOAD_FIELDS:
        raise ValueError(f"sealed content must be an object with fields {sorted(PAYLOAD_FIELDS)}")
    return _payload(document["kind"], document["token"], document.get("ttl_s", DEFAULT_CREDENTIAL_TTL_S))
