"""Named errors of the MAA token verifier: one class per check, each with a stable ``check`` name."""

from __future__ import annotations


class AttestationError(Exception):
    """Base of every verifier refusal; ``check`` names the failed check for reports and callers."""

    check = "attestation"


class MalformedToken(AttestationError):
    """The token is not a readable compact JWS with a ``kid``."""

    check = "format"


class UntrustedIssuerUrl(AttestationError):
    """The issuer or JWKS URL is neither https nor loopback http, or carries credentials."""

    check = "issuer_url"


class AlgorithmNotAllowed(AttestationError):
    """The header names an algorithm other than RS256 (``none``, HS256, ...)."""

    check = "algorithm"


class ForeignJku(AttestationError):
    """The header's ``jku`` names a key server other than the configured issuer's ``/certs``."""

    check = "jku"


class SigningKeyUnavailable(AttestationError):
    """The configured JWKS could not be fetched or has no usable key for the token's ``kid``."""

    check = "signing_key"


class SignatureInvalid(AttestationError):
    """The signature does not verify with the issuer's key."""

    check = "signature"


class IssuerMismatch(AttestationError):
    """``iss`` is not the configured issuer."""

    check = "issuer"


class TokenExpired(AttestationError):
    """``exp`` is missing or in the past (beyond the leeway)."""

    check = "expired"


class TokenNotYetValid(AttestationError):
    """``nbf`` or ``iat`` is missing or in the future (beyond the leeway)."""

    check = "not_yet_valid"


class AttestationTypeMismatch(AttestationError):
    """``x-ms-attestation-type`` is not ``sevsnpvm``."""

    check = "attestation_type"


class ComplianceMismatch(AttestationError):
    """``x-ms-compliance-status`` is not ``azure-compliant-uvm``."""

    check = "compliance"


class DebuggableGuest(AttestationError):
    """``x-ms-sevsnpvm-is-debuggable`` is not JSON ``false``."""

    check = "debuggable"


class VmplMismatch(AttestationError):
    """``x-ms-sevsnpvm-vmpl`` is not the integer 0: the report did not come from the most privileged level."""

    check = "vmpl"


class HostdataMismatch(AttestationError):
    """``x-ms-sevsnpvm-hostdata`` is not the expected CCE policy hash."""

    check = "hostdata"


class NonceMissing(AttestationError):
    """``x-ms-runtime`` carries no nonce although one was expected."""

    check = "nonce"


class NonceMismatch(AttestationError):
    """``x-ms-runtime.nonce`` is not the nonce the verifier sent."""

    check = "nonce"


class RuntimeMismatch(AttestationError):
    """``x-ms-runtime`` differs from the runtime data the verifier expected."""

    check = "runtime"


class ReportdataMismatch(AttestationError):
    """``x-ms-sevsnpvm-reportdata`` does not start with sha256 of the runtime JSON."""

    check = "reportdata"
