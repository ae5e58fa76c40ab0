"""Verifies Microsoft Azure Attestation (MAA) SEV-SNP tokens for clients that must trust the server.

Threat model: the token is attacker-supplied until proven otherwise. A forger
may pick the algorithm (``none``, HS256 keyed with the public key), point
``jku`` at a key server they control, replay an old token, or present a real
token from a debuggable guest, a different container group (hostdata) or a
different session (nonce / report data). So:

* only RS256 is accepted, decided from the header before any key is touched;
* signing keys come only from the configured issuer's ``/certs`` JWKS (x5c
  certificates); a ``jku`` naming anything else is refused, never fetched;
* the issuer must be https, except a loopback http issuer (the emulator);
  JWKS fetches send no credentials and follow no redirects;
* every claim check that fails raises its own named :class:`AttestationError`.

The checks run in one place (:func:`_claim_checks`); the sync, async and
report-style entry points differ only in how they fetch the signing key.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import jwt

from app.attestation.maa_keys import certs_url_for, maa_jwks_cache, require_trusted_url, signing_key, signing_key_async
from app.jwks import JwksCache
from app.urls import same_url
from app.wire.runtime_data import expected_reportdata
from app.attestation.errors import (
    AlgorithmNotAllowed,
    AttestationError,
    AttestationTypeMismatch,
    ComplianceMismatch,
    DebuggableGuest,
    ForeignJku,
    HostdataMismatch,
    IssuerMismatch,
    MalformedToken,
    NonceMismatch,
    NonceMissing,
    ReportdataMismatch,
    RuntimeMismatch,
    SignatureInvalid,
    TokenExpired,
    TokenNotYetValid,
    VmplMismatch,
)

ALLOWED_ALGORITHMS = frozenset({"RS256"})
EXPECTED_ATTESTATION_TYPE = "sevsnpvm"
EXPECTED_COMPLIANCE_STATUS = "azure-compliant-uvm"
MAX_TOKEN_LENGTH = 64 * 1024
_DEFAULT_CACHE = maa_jwks_cache()


@dataclass(frozen=True)
class CheckResult:
    """One line of a verification report.

    Args:
        check: Stable check name (``signature``, ``hostdata``, ...).
        ok: Whether the check passed (True for skipped checks).
        detail: Short, secret-free explanation.
        skipped: The caller did not ask for this check (e.g. no nonce given).
    """

    check: str
    ok: bool
    detail: str = ""
    skipped: bool = False


@dataclass(frozen=True)
class _Expectations:
    issuer: str
    certs_url: str
    hostdata: str
    nonce: str | None
    runtime: Mapping[str, Any] | None
    leeway: int
    now: float


def _expectations(issuer: str, jwks_url: str | None, expected_hostdata: str, nonce: str | None,
                  expected_runtime: Mapping[str, Any] | None, leeway: int, now: float | None) -> _Expectations:
    require_trusted_url(issuer, "issuer")
    hostdata = expected_hostdata.strip().lower()
    if len(hostdata) != 64 or any(c not in "0123456789abcdef" for c in hostdata):
        raise ValueError("expected_hostdata must be 64 hex characters")
    return _Expectations(issuer=issuer, certs_url=certs_url_for(issuer, jwks_url), hostdata=hostdata, nonce=nonce,
                         runtime=expected_runtime, leeway=leeway, now=time.time() if now is None else now)


def _header(token: str, exp: _Expectations) -> dict[str, Any]:
    """Header checks that must pass before any key is fetched."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise MalformedToken("not a compact JWS")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise MalformedToken("unreadable JWS header") from None
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise AlgorithmNotAllowed(f"alg {str(header.get('alg'))[:16]!r} is not RS256")
    jku = header.get("jku")
    if jku is not None and not (isinstance(jku, str) and same_url(jku, exp.certs_url)):
        # Fail closed: never fetch, never trust a key server we were not configured with.
        raise ForeignJku("jku points outside the configured issuer")
    if not isinstance(header.get("kid"), str):
        raise MalformedToken("header has no kid")
    return header


def _signed_claims(token: str, key: Any) -> dict[str, Any]:
    try:
        return jwt.decode(token, key, algorithms=sorted(ALLOWED_ALGORITHMS),
                          options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                   "verify_iss": False, "verify_aud": False})
    except jwt.InvalidAlgorithmError:
        raise AlgorithmNotAllowed("algorithm not allowed") from None
    except jwt.PyJWTError:
        raise SignatureInvalid("signature does not verify with the issuer's signing key") from None


def _int_claim(claims: Mapping[str, Any], name: str, error: type[AttestationError]) -> int:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise error(f"{name} missing or not a number")
    return int(value)


def _check_issuer(c: Mapping[str, Any], e: _Expectations) -> None:
    if not isinstance(c.get("iss"), str) or not same_url(c["iss"], e.issuer):
        raise IssuerMismatch("iss is not the configured issuer")


def _check_expiry(c: Mapping[str, Any], e: _Expectations) -> None:
    if e.now > _int_claim(c, "exp", TokenExpired) + e.leeway:
        raise TokenExpired("token has expired")


def _check_not_before(c: Mapping[str, Any], e: _Expectations) -> None:
    for name in ("nbf", "iat"):
        if _int_claim(c, name, TokenNotYetValid) > e.now + e.leeway:
            raise TokenNotYetValid(f"{name} is in the future")


def _check_attestation_type(c: Mapping[str, Any], e: _Expectations) -> None:
    if c.get("x-ms-attestation-type") != EXPECTED_ATTESTATION_TYPE:
        raise AttestationTypeMismatch(f"x-ms-attestation-type is not {EXPECTED_ATTESTATION_TYPE!r}")


def _check_compliance(c: Mapping[str, Any], e: _Expectations) -> None:
    if c.get("x-ms-compliance-status") != EXPECTED_COMPLIANCE_STATUS:
        raise ComplianceMismatch(f"x-ms-compliance-status is not {EXPECTED_COMPLIANCE_STATUS!r}")


def _check_debuggable(c: Mapping[str, Any], e: _Expectations) -> None:
    # Fail closed: only a JSON false passes; absent, "false" or anything else is refused.
    if c.get("x-ms-sevsnpvm-is-debuggable") is not False:
        raise DebuggableGuest("guest is debuggable (or the claim is missing)")


def _check_vmpl(c: Mapping[str, Any], e: _Expectations) -> None:
    # Key Vault's release policy requires VMPL 0; evidence the vault would refuse must not pass here.
    vmpl = c.get("x-ms-sevsnpvm-vmpl")
    if isinstance(vmpl, bool) or vmpl != 0:
        raise VmplMismatch("the report was not produced at VMPL 0 (or the claim is missing)")


def _check_hostdata(c: Mapping[str, Any], e: _Expectations) -> None:
    got = c.get("x-ms-sevsnpvm-hostdata")
    if not isinstance(got, str) or not hmac.compare_digest(got.lower(), e.hostdata):
        raise HostdataMismatch(f"hostdata {str(got)[:64]} is not the expected {e.hostdata}")


def _runtime(c: Mapping[str, Any]) -> Mapping[str, Any] | None:
    runtime = c.get("x-ms-runtime")
    return runtime if isinstance(runtime, Mapping) else None


def _check_nonce(c: Mapping[str, Any], e: _Expectations) -> None:
    got = (_runtime(c) or {}).get("nonce")
    if not isinstance(got, str):
        raise NonceMissing("x-ms-runtime carries no nonce")
    if not hmac.compare_digest(got.encode(), str(e.nonce).encode()):
        raise NonceMismatch("x-ms-runtime nonce is not the one we sent")


def _check_runtime(c: Mapping[str, Any], e: _Expectations) -> None:
    if _runtime(c) != dict(e.runtime or {}):
        raise RuntimeMismatch("x-ms-runtime differs from the expected runtime data")


def _check_reportdata(c: Mapping[str, Any], e: _Expectations) -> None:
    runtime = e.runtime if e.runtime is not None else _runtime(c)
    got = c.get("x-ms-sevsnpvm-reportdata")
    if runtime is None or not isinstance(got, str):
        raise ReportdataMismatch("reportdata or x-ms-runtime missing")
    # report_data = sha256(runtime JSON) || 32 zero bytes: all 64 bytes are compared.
    if not hmac.compare_digest(got.lower(), expected_reportdata(runtime)):
        raise ReportdataMismatch("reportdata is not sha256 of the runtime JSON followed by 32 zero bytes")


_Check = Callable[[Mapping[str, Any], _Expectations], None]
# (name, check, applies?) in report order; "applies" lets callers skip what they did not ask for.
_CLAIM_CHECKS: tuple[tuple[str, _Check, Callable[[_Expectations], bool]], ...] = (
    ("issuer", _check_issuer, lambda e: True),
    ("expired", _check_expiry, lambda e: True),
    ("not_yet_valid", _check_not_before, lambda e: True),
    ("attestation_type", _check_attestation_type, lambda e: True),
    ("compliance", _check_compliance, lambda e: True),
    ("debuggable", _check_debuggable, lambda e: True),
    ("vmpl", _check_vmpl, lambda e: True),
    ("hostdata", _check_hostdata, lambda e: True),
    ("nonce", _check_nonce, lambda e: e.nonce is not None),
    ("runtime", _check_runtime, lambda e: e.runtime is not None),
    ("reportdata", _check_reportdata, lambda e: True),
)

# How a check reads on a ✓/✗ line where its stable name (kept in JSON) would read as its opposite.
CHECK_LABELS = {"expired": "not expired", "not_yet_valid": "already valid", "debuggable": "not debuggable",
                "vmpl": "VMPL 0",
                "jku": "jku is the issuer's"}


def check_label(name: str) -> str:
    """The human wording of check `name` for report lines."""
    return CHECK_LABELS.get(name, name)


def _claim_checks(claims: Mapping[str, Any], exp: _Expectations, *, collect: bool) -> list[CheckResult]:
    results: list[CheckResult] = []
    for name, check, applies in _CLAIM_CHECKS:
        if not applies(exp):
            results.append(CheckResult(name, True, "not requested", skipped=True))
            continue
        try:
            check(claims, exp)
        except AttestationError as error:
            if not collect:
                raise
            results.append(CheckResult(name, False, str(error)))
        else:
            results.append(CheckResult(name, True))
    return results


def verify_maa_token(token: str, *, issuer: str, jwks_url: str | None = None, expected_hostdata: str,
                     nonce: str | None = None, expected_runtime: Mapping[str, Any] | None = None, leeway: int = 60,
                     jwks_cache: JwksCache | None = None, now: float | None = None) -> dict[str, Any]:
    """Verify an MAA SEV-SNP token and return its claims; raise the named error of the first failed check.

    Args:
        token: The compact JWS from ``/attest/maa``.
        issuer: The MAA instance URL we trust (``https://host``; loopback http for the emulator).
        jwks_url: Where the signing keys live; defaults to ``<issuer>/certs``.
        expected_hostdata: The 64-hex SHA-256 of the CCE policy we expect.
        nonce: Our nonce; ``x-ms-runtime.nonce`` must equal it.
        expected_runtime: The exact runtime object we expect in ``x-ms-runtime``.
        leeway: Seconds of clock skew tolerated for ``exp``/``nbf``/``iat``.
        jwks_cache: Cache to use (defaults to a process-wide one).
        now: Override the current time (tests).

    Example:
        >>> claims = verify_maa_token(tok, issuer="https://sharedeus.eus.attest.azure.net",
        ...                           expected_hostdata=hd, nonce=n)  # doctest: +SKIP
    """
    exp = _expectations(issuer, jwks_url, expected_hostdata, nonce, expected_runtime, leeway, now)
    header = _header(token, exp)
    key = signing_key(jwks_cache or _DEFAULT_CACHE, exp.certs_url, header["kid"])
    claims = _signed_claims(token, key)
    _claim_checks(claims, exp, collect=False)
    return claims


async def verify_maa_token_async(token: str, *, issuer: str, jwks_url: str | None = None, expected_hostdata: str,
                                 nonce: str | None = None, expected_runtime: Mapping[str, Any] | None = None,
                                 leeway: int = 60, jwks_cache: JwksCache | None = None,
                                 now: float | None = None) -> dict[str, Any]:
    """Async twin of :func:`verify_maa_token` (same checks; the JWKS is fetched without blocking)."""
    exp = _expectations(issuer, jwks_url, expected_hostdata, nonce, expected_runtime, leeway, now)
    header = _header(token, exp)
    key = await signing_key_async(jwks_cache or _DEFAULT_CACHE, exp.certs_url, header["kid"])
    claims = _signed_claims(token, key)
    _claim_checks(claims, exp, collect=False)
    return claims


def check_maa_token(token: str, *, issuer: str, jwks_url: str | None = None, expected_hostdata: str,
                    nonce: str | None = None, expected_runtime: Mapping[str, Any] | None = None, leeway: int = 60,
                    jwks_cache: JwksCache | None = None, now: float | None = None) -> list[CheckResult]:
    """Run every check and report each one (for the ``verify-token`` CLI).

    Claim checks run only after the header and signature pass: unsigned claims prove nothing.
    """
    exp = _expectations(issuer, jwks_url, expected_hostdata, nonce, expected_runtime, leeway, now)
    try:
        header = _header(token, exp)
        key = signing_key(jwks_cache or _DEFAULT_CACHE, exp.certs_url, header["kid"])
        claims = _signed_claims(token, key)
    except AttestationError as error:
        return [CheckResult(error.check, False, str(error))]
    preamble = [CheckResult("algorithm", True), CheckResult("jku", True), CheckResult("signature", True)]
    return preamble + _claim_checks(claims, exp, collect=True)
