"""Evaluates Azure Key Vault's secure-key-release policy grammar against attestation claims.

Threat model: this evaluator decides whether the emulator's key store hands out
the RSA key that unseals every baseline secret, so it mirrors Key Vault's
behaviour and fails closed. A malformed policy, an unknown operator, a claim
outside any ``authority`` scope, a missing claim or a value of the wrong type
is a refusal, never a pass. Nesting is capped so hostile input cannot exhaust
the stack.

Grammar (Key Vault "1.0.0"): the root has ``version`` and one of ``anyOf`` /
``allOf`` (a non-empty list). Each member is either a group (``anyOf`` or
``allOf``, optionally with an ``authority`` that the token's issuer must equal
for that branch) or a claim condition ``{"claim": NAME, OPERATOR: VALUE}``
with exactly one operator. Like Microsoft's samples, booleans and integers in
claims compare against their string forms (``true`` matches ``"true"``,
``0`` matches ``"0"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

SUPPORTED_VERSIONS = frozenset({"1.0.0"})
GROUP_KEYS = frozenset({"anyOf", "allOf"})
EQUALITY_OPERATORS = frozenset({"equals", "notEquals"})
ORDERING_OPERATORS = frozenset({"less", "lessOrEquals", "greater", "greaterOrEquals"})
PRESENCE_OPERATORS = frozenset({"exists"})
OPERATORS = EQUALITY_OPERATORS | ORDERING_OPERATORS | PRESENCE_OPERATORS
MAX_DEPTH = 8


class PolicyInvalid(ValueError):
    """The release policy does not follow the grammar; Key Vault would refuse it too."""


@dataclass(frozen=True)
class PolicyDecision:
    """Outcome of one evaluation.

    Args:
        allowed: True only when the policy is satisfied.
        reason: For a refusal, which authority or claim failed (claim names only, no values).
    """

    allowed: bool
    reason: str = ""


def _canonical(value: Any) -> str | None:
    # Key Vault samples write "false" / "0"; tokens carry JSON bools and ints.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    return None


def _number(value: Any) -> float | None:
    text = _canonical(value)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _normalise_authority(authority: str) -> str:
    return authority.strip().rstrip("/").lower()


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    if operator in EQUALITY_OPERATORS:
        left, right = _canonical(actual), _canonical(expected)
        if left is None or right is None:
            return False  # Fail closed: objects and lists never compare.
        return (left == right) == (operator == "equals")
    left_num, right_num = _number(actual), _number(expected)
    if left_num is None or right_num is None:
        return False
    return {
        "less": left_num < right_num,
        "lessOrEquals": left_num <= right_num,
        "greater": left_num > right_num,
        "greaterOrEquals": left_num >= right_num,
    }[operator]


def _claim_condition(node: Mapping[str, Any], claims: Mapping[str, Any]) -> PolicyDecision:
    name = node.get("claim")
    operators = [key for key in node if key != "claim"]
    if not isinstance(name, str) or not name or len(operators) != 1 or operators[0] not in OPERATORS:
        raise PolicyInvalid("a claim condition needs a claim name and exactly one known operator")
    operator = operators[0]
    present = name in claims
    if operator == "exists":
        wanted = _canonical(node["exists"])
        if wanted not in ("true", "false"):
            raise PolicyInvalid(f"'exists' on claim {name!r} must be true or false")
        ok = present == (wanted == "true")
    else:
        ok = present and _compare(operator, claims[name], node[operator])
    return PolicyDecision(True) if ok else PolicyDecision(False, f"claim {name!r} failed {operator!r}")


def _group(node: Mapping[str, Any], claims: Mapping[str, Any], issuer: str, authority: str | None, depth: int) -> PolicyDecision:
    if depth > MAX_DEPTH:
        raise PolicyInvalid(f"policy nests deeper than {MAX_DEPTH} levels")
    if "authority" in node:
        if not isinstance(node["authority"], str) or not node["authority"].strip():
            raise PolicyInvalid("authority must be a non-empty string")
        authority = node["authority"]
        if _normalise_authority(authority) != _normalise_authority(issuer):
            return PolicyDecision(False, "token issuer does not match the policy authority")
    kinds = GROUP_KEYS & node.keys()
    if "claim" in node:
        if kinds or authority is None:
            raise PolicyInvalid("a claim condition must sit inside an authority-scoped group")
        return _claim_condition({k: v for k, v in node.items() if k != "authority"}, claims)
    if len(kinds) != 1:
        raise PolicyInvalid("a group needs exactly one of anyOf / allOf")
    kind = kinds.pop()
    members = node[kind]
    if not isinstance(members, list) or not members or not all(isinstance(m, Mapping) for m in members):
        raise PolicyInvalid(f"{kind} must be a non-empty list of objects")
    decisions = [_group(member, claims, issuer, authority, depth + 1) for member in members]
    if kind == "allOf":
        return next((d for d in decisions if not d.allowed), PolicyDecision(True))
    if any(d.allowed for d in decisions):
        return PolicyDecision(True)
    return PolicyDecision(False, "no anyOf branch satisfied: " + "; ".join(d.reason for d in decisions))


def evaluate_release_policy(policy: Mapping[str, Any], claims: Mapping[str, Any], *, issuer: str) -> PolicyDecision:
    """Decide whether a token from ``issuer`` carrying ``claims`` satisfies ``policy``.

    Args:
        policy: The release policy JSON (as built by ``policy.release_policy``).
        claims: The verified attestation token's claims.
        issuer: The token's issuer URL, matched against each ``authority``.

    Raises:
        PolicyInvalid: the policy is malformed (callers treat this as a refusal).

    Example:
        >>> p = {"version": "1.0.0", "anyOf": [{"authority": "https://maa",
        ...      "allOf": [{"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"}]}]}
        >>> evaluate_release_policy(p, {"x-ms-sevsnpvm-vmpl": 0}, issuer="https://maa").allowed
        True
    """
    if not isinstance(policy, Mapping) or policy.get("version") not in SUPPORTED_VERSIONS:
        raise PolicyInvalid(f"policy version must be one of {sorted(SUPPORTED_VERSIONS)}")
    root = {key: value for key, value in policy.items() if key != "version"}
    if set(root) - GROUP_KEYS:
        raise PolicyInvalid("the policy root holds only version and anyOf / allOf")
    return _group(root, claims, issuer, None, 0)
