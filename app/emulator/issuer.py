"""The emulator's MAA-like token issuer: an RS256 signing key, ``/certs`` with an x5c cert, SEV-SNP claims.

NOT A TEE. The claims are asserted by this process, not measured by hardware;
they only have the real names and shapes so the verifier and the release
policy evaluator are exercised exactly as against Microsoft Azure Attestation.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
import time
from typing import Any, Mapping

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from app.wire.runtime_data import expected_reportdata
from policy.release_policy import ACI_COMPLIANCE_STATUS

TOKEN_LIFETIME_S = 8 * 3600
# Fixed, obviously fake measurement: the emulator has no launch digest to report.
EMULATED_LAUNCH_MEASUREMENT = "e0" * 48
_SVN_CLAIMS = {
    "x-ms-sevsnpvm-bootloader-svn": 3,
    "x-ms-sevsnpvm-tee-svn": 0,
    "x-ms-sevsnpvm-snpfw-svn": 8,
    "x-ms-sevsnpvm-microcode-svn": 115,
    "x-ms-sevsnpvm-guestsvn": 1,
}


def self_signed_certificate(key: rsa.RSAPrivateKey, common_name: str, *, days: int = 30,
                            san: x509.SubjectAlternativeName | None = None) -> x509.Certificate:
    """A self-signed certificate for ``key`` (usable as its own trust anchor)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256())


class MaaIssuer:
    """Signs SEV-SNP-shaped attestation tokens for one emulated container group.

    Args:
        issuer_url: The ``iss`` value and the base of ``/certs`` (e.g. ``http://127.0.0.1:PORT``).
        hostdata: 64-hex SHA-256 of the CCE policy the emulator was started with.

    Example:
        >>> issuer = MaaIssuer("http://127.0.0.1:8400", "ab" * 32)
        >>> token = issuer.mint(b'{"nonce":"abcdefgh"}')
    """

    def __init__(self, issuer_url: str, hostdata: str) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self.hostdata = hostdata
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert = self_signed_certificate(self._key, "Emulated MAA signing key (NOT A TEE)")
        der = self._cert.public_bytes(serialization.Encoding.DER)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
        self._jwks = {"keys": [{"kid": self.kid, "kty": "RSA", "use": "sig", "alg": "RS256",
                                "x5c": [base64.b64encode(der).decode()]}]}

    @property
    def certs_url(self) -> str:
        """Where verifiers fetch the signing keys."""
        return self.issuer_url + "/certs"

    def jwks(self) -> dict[str, Any]:
        """The ``/certs`` document."""
        return self._jwks

    def claims_for(self, runtime_data: bytes, *, now: int | None = None) -> dict[str, Any]:
        """The claims MAA would issue for ``runtime_data`` (which must be a JSON object)."""
        runtime = json.loads(runtime_data)
        if not isinstance(runtime, dict):
            raise ValueError("runtime data must be a JSON object")
        issued = int(time.time()) if now is None else now
        return {
            "iss": self.issuer_url, "iat": issued, "nbf": issued, "exp": issued + TOKEN_LIFETIME_S,
            "jti": secrets.token_hex(32),
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": ACI_COMPLIANCE_STATUS,
            "x-ms-policy-hash": hashlib.sha256(b"emulated MAA policy").hexdigest(),
            "x-ms-runtime": runtime,
            "x-ms-ver": "1.0",
            "x-ms-sevsnpvm-hostdata": self.hostdata,
            "x-ms-sevsnpvm-is-debuggable": False,
            "x-ms-sevsnpvm-launchmeasurement": EMULATED_LAUNCH_MEASUREMENT,
            "x-ms-sevsnpvm-reportdata": expected_reportdata(runtime_data),
            "x-ms-sevsnpvm-vmpl": 0,
            **_SVN_CLAIMS,
        }

    def mint(self, runtime_data: bytes, *, claims: Mapping[str, Any] | None = None,
             headers: Mapping[str, Any] | None = None, signing_key: rsa.RSAPrivateKey | None = None) -> str:
        """Sign a token for ``runtime_data``.

        Args:
            runtime_data: The JSON bytes the workload bound (goes to ``x-ms-runtime`` and report data).
            claims: Overrides for tests (a value of None removes the claim).
            headers: Header overrides for tests (e.g. a foreign ``jku``).
            signing_key: Sign with another key (tests of the wrong-key refusal).
        """
        payload = {**self.claims_for(runtime_data), **(claims or {})}
        payload = {name: value for name, value in payload.items() if value is not None}
        header = {"jku": self.certs_url, "kid": self.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(payload, signing_key or self._key, algorithm="RS256", headers=header)
