"""The runtime data an attestation binds: canonical bytes, report data, and the tools digest.

The server and the verifying agent must compute these byte-for-byte alike, so
this module is their single definition.

* Runtime JSON is ``{"nonce", "session_pub", "tools_digest", "audit_pub",
  "tls_spki_sha256"}`` serialised as canonical JSON: keys sorted, no
  whitespace, UTF-8, no ASCII escaping. The SKR sidecar receives the standard
  base64 of these bytes. The pre-auth attestation route has no session, so its
  runtime JSON has no ``session_pub``; ``tls_spki_sha256`` is defined in
  :mod:`app.wire.tls_binding`.
* SEV-SNP report data is ``sha256(runtime bytes) || 32 zero bytes``; MAA shows
  it as 128 lowercase hex characters in ``x-ms-sevsnpvm-reportdata``.
* The tools digest is the SHA-256 (hex) of the canonical JSON of the exposed
  tool list: sorted by name, each tool reduced to exactly
  ``{"name", "description", "inputSchema"}`` (a missing description is null).
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Iterable, Mapping

from app.wire.tls_binding import TLS_SPKI_FIELD

MAX_NONCE_LENGTH = 128
MIN_NONCE_LENGTH = 8


def canonical_json(value: Any) -> bytes:
    """Serialise ``value`` deterministically (sorted keys, compact, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64url(data: bytes) -> str:
    """Unpadded base64url, the encoding JOSE uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded (or padded) base64url; raises ``ValueError`` on bad input."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def validate_nonce(nonce: object) -> str:
    """Return ``nonce`` if it is a printable string of bounded length, else raise ``ValueError``."""
    if not isinstance(nonce, str) or not (MIN_NONCE_LENGTH <= len(nonce) <= MAX_NONCE_LENGTH):
        raise ValueError(f"nonce must be a string of {MIN_NONCE_LENGTH}..{MAX_NONCE_LENGTH} characters")
    if not nonce.isprintable() or not nonce.isascii():
        raise ValueError("nonce must be printable ASCII")
    return nonce


def runtime_claims(nonce: str, session_pub: str | None, tools_digest: str, audit_pub: str | None = None, *,
                   tls_spki_sha256: str | None = None, capability_pub: str | None = None) -> dict[str, str]:
    """The runtime JSON object an attestation binds into the MAA token.

    ``audit_pub`` (the audit log's Ed25519 public key) is bound too when the server has one, so a
    verifier of the audit log can take its key from signed evidence rather than an unsigned field.
    ``tls_spki_sha256`` binds the TLS key the server answers with, so a client can pin that connection.
    ``capability_pub`` (the capability root's Ed25519 public key) is bound when the server mints
    capabilities, so a delegating agent knows only the attested code can mint and check them.
    ``session_pub`` is None only on the pre-auth route, which serves no session.
    """
    optional = {"session_pub": session_pub, "audit_pub": audit_pub, TLS_SPKI_FIELD: tls_spki_sha256,
                "capability_pub": capability_pub}
    return {"nonce": nonce, "tools_digest": tools_digest,
            **{name: value for name, value in optional.items() if value is not None}}


def expected_reportdata(runtime: bytes | Mapping[str, Any]) -> str:
    """Hex report data MAA shows for ``runtime`` (raw bytes, or an object to canonicalise)."""
    raw = runtime if isinstance(runtime, bytes) else canonical_json(dict(runtime))
    return (hashlib.sha256(raw).digest() + bytes(32)).hex()


def _tool_fields(tool: Any) -> dict[str, Any]:
    if not isinstance(tool, Mapping):
        # mcp.types.Tool (pydantic): the wire form uses the camelCase alias.
        tool = tool.model_dump(by_alias=True, mode="json")
    schema = tool.get("inputSchema", tool.get("input_schema"))
    if not isinstance(tool.get("name"), str) or schema is None:
        raise ValueError("each tool needs a name and an inputSchema")
    return {"name": tool["name"], "description": tool.get("description"), "inputSchema": schema}


def tools_digest(tool_definitions: Iterable[Any]) -> str:
    """SHA-256 hex of the canonical tool list, as served by MCP ``tools/list``.

    Args:
        tool_definitions: ``mcp.types.Tool`` objects or their JSON dicts.
    """
    tools = sorted((_tool_fields(tool) for tool in tool_definitions), key=lambda t: t["name"])
    return hashlib.sha256(canonical_json(tools)).hexdigest()
