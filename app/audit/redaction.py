"""Remove secrets from audit records and log lines: exact loaded values first, then known formats.

Threat model: audit files and container logs leave the TEE, so a credential written there is a
credential lost. Two passes run: exact-match removal of every secret value the process has loaded
(baseline secrets, session tokens, bearer tokens seen), then pattern redaction of common credential
formats in case a secret we never loaded shows up. Redaction applies to what we record, never to
tool results: a GitHub issue titled "rotate the ghp_ token" reaches the caller intact, and only
its audit copy is scrubbed. Over-redacting an audit line is harmless; blocking a result is not.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

# Shorter values would shred ordinary text; no real credential is this short.
MIN_SECRET_LENGTH = 6
MARK = "[REDACTED]"

# Common credential formats; each replacement keeps enough context to read the record.
CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)(authorization\s*[:=]\s*)[^\r\n,;\"']+"), rf"\1{MARK}"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*"), f"Bearer {MARK}"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), f"{MARK}:github-token"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), f"{MARK}:github-token"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), f"{MARK}:slack-token"),
    (re.compile(r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+"), f"{MARK}:slack-webhook"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), f"{MARK}:jwt"),
    # URL-style connection strings: keep scheme, user and host, drop the password.
    (re.compile(r"\b([a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@"), rf"\1{MARK}@"),
    # libpq keyword style: "host=db password=s3cret".
    (re.compile(r"(?i)\b(password\s*=\s*)('[^']*'|\S+)"), rf"\1{MARK}"),
)


def _scoped(pattern: re.Pattern[str]) -> str:
    """The pattern as a group that keeps its own flags, so patterns can share one alternation."""
    source = pattern.pattern
    inline = re.IGNORECASE if source.startswith("(?i)") else 0
    if pattern.flags & ~re.UNICODE != inline:
        # A flag passed to re.compile would be lost in the alternation; only a leading (?i) is carried over.
        raise ValueError(f"credential pattern {source!r}: give its flags inline, as a leading (?i)")
    return f"(?i:{source[4:]})" if inline else f"(?:{source})"


# One search over all formats: most text holds none, and then no substitution runs at all.
ANY_CREDENTIAL = re.compile("|".join(_scoped(pattern) for pattern, _ in CREDENTIAL_PATTERNS))
# Mapping keys whose values are credentials whatever they look like.
SENSITIVE_KEYS = frozenset({"authorization", "password", "passwd", "secret", "token", "access_token",
                            "refresh_token", "api_key", "apikey", "client_secret", "cookie"})


class Redactor:
    """Scrubs strings, mappings and lists for recording.

    Args:
        secret_values: Values that must never appear in a record (loaded secrets).

    Example:
        >>> r = Redactor(["hunter2-canary"])
        >>> r.redact({"note": "pw is hunter2-canary"})
        {'note': 'pw is [REDACTED]'}
    """

    def __init__(self, secret_values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._exact: re.Pattern[str] | None = None
        for value in secret_values:
            self.add_secret(value)

    def add_secret(self, value: str) -> None:
        """Add a value (for example a session token) to the exact-match set."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value not in self._secrets:
                self._secrets.add(value)
                self._recompile()

    def remove_secret(self, value: str) -> None:
        """Forget a value the process no longer holds (an expired session token), keeping the set small."""
        with self._lock:
            if value in self._secrets:
                self._secrets.discard(value)
                self._recompile()

    def frozen(self) -> Redactor:
        """A scrubbing-only copy with this moment's secret set: a record built a little later (in the audit
        batch) is scrubbed of a session token even if that session ended in between. It learns no secrets."""
        copy = Redactor()
        copy._exact = self._exact  # compiled once per change and never altered: sharing it is a snapshot
        return copy

    def _recompile(self) -> None:
        # Longest first, so a secret containing another is removed whole.
        ordered = sorted(self._secrets, key=len, reverse=True)
        self._exact = re.compile("|".join(re.escape(s) for s in ordered)) if ordered else None

    def redact_text(self, text: str) -> str:
        """Scrub one string."""
        exact = self._exact
        if exact is not None:
            text = exact.sub(MARK, text)
        if ANY_CREDENTIAL.search(text) is None:
            return text
        for pattern, replacement in CREDENTIAL_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact(self, value: Any) -> Any:
        """Scrub strings inside any JSON-like value; other scalars pass through."""
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {
                str(key): MARK if str(key).lower() in SENSITIVE_KEYS else self.redact(item)
                for key, item in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.redact(item) for item in value]
        return value


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs each record's message and traceback in place.

    Example:
        >>> logging.getLogger().addFilter(RedactingFilter(Redactor(["canary-secret"])))
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._redactor.redact_text(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self._redactor.redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = self._redactor.redact_text(record.stack_info)
        return True


def install_log_redaction(redactor: Redactor, logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a `RedactingFilter` to every handler there is now; see `attach_log_filter`."""
    log_filter = RedactingFilter(redactor)
    attach_log_filter(log_filter, logger)
    return log_filter


def attach_log_filter(log_filter: logging.Filter, logger: logging.Logger | None = None) -> None:
    """Put `log_filter` on every handler of `logger`, or of the root and every logger with its own.

    Handler filters, not logger filters: a logger's own filters never see records that
    propagate up from child loggers, while its handlers see them all. Libraries such as
    fastmcp and uvicorn install handlers of their own (some with `propagate=False`), so
    the server calls this again once they are configured. Re-attaching is a no-op.
    """
    if logger is not None:
        targets = [logger]
    else:
        named = [item for item in logging.Logger.manager.loggerDict.values() if isinstance(item, logging.Logger)]
        targets = [logging.getLogger(), *named]
    for target in targets:
        for handler in target.handlers:
            handler.addFilter(log_filter)
