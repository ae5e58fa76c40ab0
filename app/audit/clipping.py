"""Bound what one audit record can hold: long strings are cut and hashed, wide or deep values are trimmed.

Threat model: every call is recorded, and the caller chooses the tool name, the argument names and
the argument values, so without a bound one call can write megabytes to the audit log (the log
leaves the TEE, so size is also cost) and make redaction scan megabytes (CPU). Every
caller-chosen string is kept up to a limit and then replaced by its head plus its length and
SHA-256, which still lets an investigator match it against a known value; mappings and lists keep
their first items and say how many were left out; nesting deeper than `MAX_DEPTH` is summarised.
Redaction runs on the kept head plus `REDACTION_MARGIN` characters, so a cut can never leave half
of a secret behind, and only values longer than the limit are hashed, never a short secret alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

from app.audit.redaction import MARK, SENSITIVE_KEYS

MAX_RECORDED_CHARS = 256  # argument values and reasons
MAX_NAME_CHARS = 128  # tool names and argument names
MAX_RECORDED_ITEMS = 32  # keys of a mapping, items of a list
MAX_DEPTH = 4
REDACTION_MARGIN = 4096  # longer than any credential we redact
OMITTED_KEY = "…omitted"
Redact = Callable[[str], str]


def _as_is(text: str) -> str:
    return text


def clip_text(text: str, limit: int = MAX_RECORDED_CHARS, redact: Redact = _as_is) -> str:
    """`redact(text)` when short enough, else its redacted head, its length and its SHA-256 (16 hex digits).

    Example:
        >>> clip_text("x" * 300, 4)
        'xxxx…[300 chars, sha256:...]'
    """
    if len(text) <= limit:
        return redact(text)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{redact(text[:limit + REDACTION_MARGIN])[:limit]}…[{len(text)} chars, sha256:{digest}]"


def clip_value(value: Any, redact: Redact = _as_is, depth: int = 0) -> Any:
    """A JSON-like value with every string redacted and bounded, and every mapping, list and level bounded.

    Values under a credential-named key (`SENSITIVE_KEYS`) are replaced whatever they hold.
    """
    if isinstance(value, str):
        return clip_text(value, redact=redact)
    if depth >= MAX_DEPTH and isinstance(value, (Mapping, list, tuple)):
        return f"…[nested {type(value).__name__} of {len(value)}]"
    if isinstance(value, Mapping):
        return clip_mapping(value, lambda key, item: MARK if str(key).lower() in SENSITIVE_KEYS
                            else clip_value(item, redact, depth + 1), redact)
    if isinstance(value, (list, tuple)):
        kept = [clip_value(item, redact, depth + 1) for item in value[:MAX_RECORDED_ITEMS]]
        left_out = len(value) - MAX_RECORDED_ITEMS
        return kept + ([f"{OMITTED_KEY} {left_out} items"] if left_out > 0 else [])
    return value


def clip_mapping(value: Mapping[Any, Any], convert: Callable[[Any, Any], Any],
                 redact: Redact = _as_is) -> dict[str, Any]:
    """The first `MAX_RECORDED_ITEMS` entries with clipped keys and converted values, plus how many were left out."""
    clipped = {clip_text(str(key), MAX_NAME_CHARS, redact): convert(key, item)
               for key, item in islice(value.items(), MAX_RECORDED_ITEMS)}
    if len(value) > MAX_RECORDED_ITEMS:
        clipped[OMITTED_KEY] = len(value) - MAX_RECORDED_ITEMS
    return clipped
