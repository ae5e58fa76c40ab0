"""Load and strictly validate the declarative capability policy (`app/capabilities.toml`).

Threat model: the policy file is the single list of what the server may do. A typo must never widen
it, so validation is strict and fails closed: unknown keys, wrong types, unknown upstreams, a
write-class tool without confirmation, or a tool naming an upstream with no limits all refuse
startup with a `PolicyError` that names the file, the tool and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

TOOL_CLASSES = frozenset({"read", "write"})
# Upstreams a tool may name; "none" means the tool talks to nothing outside the process.
KNOWN_UPSTREAMS = frozenset({"github", "postgres", "webhook", "attestation", "none"})
NO_UPSTREAM = "none"

_TOP_KEYS = frozenset({"global", "upstreams", "tools"})
_OPTIONAL_TOP_KEYS = frozenset({"refusals", "sessions"})
_REFUSAL_KEYS = frozenset({"per_principal_per_minute", "burst", "global_per_minute", "global_burst"})
_SESSION_KEYS = frozenset({"max_open_per_principal", "opens_per_principal_per_minute", "burst"})
_UPSTREAM_KEYS = frozenset({"max_concurrency", "breaker_failures", "breaker_cooldown_s", "timeout_s"})
_OPTIONAL_UPSTREAM_KEYS = frozenset({"queue_s", "max_per_principal"})
DEFAULT_QUEUE_S = 0.25
_TOOL_KEYS = frozenset({"class", "scopes", "confirm", "upstream", "quota"})
PACKAGED_POLICY = "capabilities.toml"


class PolicyError(ValueError):
    """The capability policy file is invalid; the message names file, section and field."""


@dataclass(frozen=True)
class Quota:
    """A token-bucket limit.

    Args:
        per_minute: Sustained refill rate.
        burst: Bucket capacity: how many calls may arrive at once.
    """

    per_minute: float
    burst: int


@dataclass(frozen=True)
class UpstreamLimits:
    """Concurrency cap, timeout and breaker settings for one upstream."""

    name: str
    max_concurrency: int
    breaker_failures: int
    breaker_cooldown_s: float
    timeout_s: float
    queue_s: float = DEFAULT_QUEUE_S  # how long a call may wait for a free slot before it is refused
    max_per_principal: int = 0  # one principal's fair share of the slots; 0 means half (at least one)

    @property
    def principal_share(self) -> int:
        """How many of this upstream's slots one principal may hold at once."""
        return self.max_per_principal or max(1, self.max_concurrency // 2)


@dataclass(frozen=True)
class RefusalBudget:
    """What refused calls may cost before the caller is refused outright (and its records summarised).

    Args:
        per_principal: Each principal's budget of refused calls.
        overall: All principals' refused calls together.
    """

    per_principal: Quota = Quota(per_minute=30, burst=20)
    overall: Quota = Quota(per_minute=300, burst=100)


@dataclass(frozen=True)
class SessionLimits:
    """MCP sessions (2025-11-25 `initialize`) per principal.

    Args:
        max_open_per_principal: Open sessions one principal may hold; the next `initialize` is refused.
        opens: How fast one principal may open sessions.
    """

    max_open_per_principal: int = 32
    opens: Quota = Quota(per_minute=30, burst=10)


@dataclass(frozen=True)
class ToolPolicy:
    """What one tool is: its class, required scopes, confirmation, upstream and quota."""

    name: str
    tool_class: str
    scopes: frozenset[str]
    confirm: bool
    upstream: str
    quota: Quota


@dataclass(frozen=True)
class CapabilityPolicy:
    """The whole validated policy.

    Example:
        >>> policy = load_policy()
        >>> policy.tool("send_notification").confirm
        True
    """

    source: str
    global_quota: Quota
    upstreams: dict[str, UpstreamLimits]
    tools: dict[str, ToolPolicy]
    refusals: RefusalBudget = RefusalBudget()
    sessions: SessionLimits = SessionLimits()

    def tool(self, name: str) -> ToolPolicy | None:
        """The tool's policy, or None when the tool is not declared (and so never exposed)."""
        return self.tools.get(name)

    @property
    def all_scopes(self) -> frozenset[str]:
        """Every scope some tool requires; a token with none of them has no business here."""
        return frozenset().union(*(tool.scopes for tool in self.tools.values()))


def _reject(source: str, where: str, problem: str) -> NoReturn:
    raise PolicyError(f"invalid capability policy {source}: {where}: {problem}")


def _table(source: str, where: str, value: Any, allowed: frozenset[str], required: frozenset[str]) -> dict:
    if not isinstance(value, dict):
        _reject(source, where, "must be a table")
    unknown = sorted(set(value) - allowed)
    if unknown:
        _reject(source, where, f"unknown field {unknown[0]!r}")
    missing = sorted(required - set(value))
    if missing:
        _reject(source, where, f"missing field {missing[0]!r}")
    return value


def _number(source: str, where: str, value: Any, *, integer: bool = False) -> float:
    # bool is an int subclass; `true` must not pass as a count.
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        _reject(source, where, f"must be a positive {'integer' if integer else 'number'}")
    return value


def _quota(source: str, where: str, raw: Any, rate_key: str) -> Quota:
    table = _table(source, where, raw, frozenset({rate_key, "burst"}), frozenset({rate_key, "burst"}))
    return Quota(
        per_minute=_number(source, f"{where}.{rate_key}", table[rate_key]),
        burst=int(_number(source, f"{where}.burst", table["burst"], integer=True)),
    )


def _upstream(source: str, name: str, raw: Any) -> UpstreamLimits:
    where = f"[upstreams.{name}]"
    if name not in KNOWN_UPSTREAMS or name == NO_UPSTREAM:
        _reject(source, where, f"unknown upstream {name!r}")
    table = _table(source, where, raw, _UPSTREAM_KEYS | _OPTIONAL_UPSTREAM_KEYS, _UPSTREAM_KEYS)
    max_concurrency = int(_number(source, f"{where}.max_concurrency", table["max_concurrency"], integer=True))
    share = 0
    if "max_per_principal" in table:
        share = int(_number(source, f"{where}.max_per_principal", table["max_per_principal"], integer=True))
        if share > max_concurrency:
            _reject(source, f"{where}.max_per_principal", "must not exceed max_concurrency")
    return UpstreamLimits(
        name=name,
        max_concurrency=max_concurrency,
        breaker_failures=int(_number(source, f"{where}.breaker_failures", table["breaker_failures"], integer=True)),
        breaker_cooldown_s=_number(source, f"{where}.breaker_cooldown_s", table["breaker_cooldown_s"]),
        timeout_s=_number(source, f"{where}.timeout_s", table["timeout_s"]),
        queue_s=_number(source, f"{where}.queue_s", table.get("queue_s", DEFAULT_QUEUE_S)),
        max_per_principal=share,
    )


def _tool(source: str, name: str, raw: Any, upstreams: dict[str, UpstreamLimits]) -> ToolPolicy:
    where = f"[tools.{name}]"
    table = _table(source, where, raw, _TOOL_KEYS, _TOOL_KEYS)
    tool_class = table["class"]
    if tool_class not in TOOL_CLASSES:
        _reject(source, f"{where}.class", f"must be one of {sorted(TOOL_CLASSES)}")
    scopes = table["scopes"]
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) and s for s in scopes):
        _reject(source, f"{where}.scopes", "must be a non-empty list of scope strings")
    if not isinstance(table["confirm"], bool):
        _reject(source, f"{where}.confirm", "must be true or false")
    if tool_class == "write" and not table["confirm"]:
        _reject(source, f"{where}.confirm", "a write-class tool must require confirmation")
    upstream = table["upstream"]
    if upstream not in KNOWN_UPSTREAMS:
        _reject(source, f"{where}.upstream", f"unknown upstream {upstream!r}")
    if upstream != NO_UPSTREAM and upstream not in upstreams:
        _reject(source, f"{where}.upstream", f"no [upstreams.{upstream}] section declares its limits")
    return ToolPolicy(
        name=name,
        tool_class=tool_class,
        scopes=frozenset(scopes),
        confirm=table["confirm"],
        upstream=upstream,
        quota=_quota(source, f"{where}.quota", table["quota"], "per_principal_per_minute"),
    )


def parse_policy(text: str, source: str = "<string>") -> CapabilityPolicy:
    """Parse and validate policy TOML text; raises `PolicyError` on any problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        _reject(source, "TOML syntax", str(exc))
    return policy_from_mapping(raw, source)


def policy_from_mapping(raw: Any, source: str = "<mapping>") -> CapabilityPolicy:
    """Validate an already-parsed policy document (the TOML's tables as dicts); raises `PolicyError`."""
    top = _table(source, "top level", raw, _TOP_KEYS | _OPTIONAL_TOP_KEYS, _TOP_KEYS)
    global_quota = _quota(source, "[global]", top["global"], "per_minute")
    if not isinstance(top["upstreams"], dict) or not isinstance(top["tools"], dict) or not top["tools"]:
        _reject(source, "[upstreams]/[tools]", "must be non-empty tables")
    upstreams = {name: _upstream(source, name, value) for name, value in top["upstreams"].items()}
    tools = {name: _tool(source, name, value, upstreams) for name, value in top["tools"].items()}
    return CapabilityPolicy(source=source, global_quota=global_quota, upstreams=upstreams, tools=tools,
                            refusals=_refusals(source, top.get("refusals")),
                            sessions=_sessions(source, top.get("sessions")))


def _refusals(source: str, raw: Any) -> RefusalBudget:
    if raw is None:
        return RefusalBudget()
    table = _table(source, "[refusals]", raw, _REFUSAL_KEYS, _REFUSAL_KEYS)
    return RefusalBudget(
        per_principal=_quota(source, "[refusals]", {key: table[key] for key in ("per_principal_per_minute", "burst")},
                             "per_principal_per_minute"),
        overall=Quota(per_minute=_number(source, "[refusals].global_per_minute", table["global_per_minute"]),
                      burst=int(_number(source, "[refusals].global_burst", table["global_burst"], integer=True))),
    )


def _sessions(source: str, raw: Any) -> SessionLimits:
    if raw is None:
        return SessionLimits()
    table = _table(source, "[sessions]", raw, _SESSION_KEYS, _SESSION_KEYS)
    return SessionLimits(
        max_open_per_principal=int(_number(source, "[sessions].max_open_per_principal",
                                           table["max_open_per_principal"], integer=True)),
        opens=_quota(source, "[sessions]", {key: table[key] for key in ("opens_per_principal_per_minute", "burst")},
                     "opens_per_principal_per_minute"),
    )


def load_policy(path: str | Path | None = None) -> CapabilityPolicy:
    """Load the policy from `path`, or the packaged `app/capabilities.toml` when None."""
    if path is None:
        resource = resources.files("app").joinpath(PACKAGED_POLICY)
        return parse_policy(resource.read_text(encoding="utf-8"), source=f"app/{PACKAGED_POLICY}")
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        _reject(str(file), "file", f"cannot be read ({exc.strerror})")
    return parse_policy(text, source=str(file))
