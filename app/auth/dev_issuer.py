"""A local development token issuer, so `make run` uses the same bearer-token flow as production.

Threat model: this issuer exists for loopback development only. Its RSA private key lives under a
state directory (default `.mcp-tee/dev-issuer/`, directory 0700, key 0600) and never leaves it.
The server, configured with `MCP_AUTH_ISSUER=dev`, trusts only the public JWKS in that directory,
read from disk; nothing is served over the network. Its issuer identifier is a reserved `.invalid`
name, so a production configuration can never accidentally trust it.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

DEV_ISSUER_ID = "https://dev-issuer.mcp-tee.invalid"
DEFAULT_STATE_DIR = Path(".mcp-tee") / "dev-issuer"
DEFAULT_AUDIENCE = "http://127.0.0.1:8080/mcp"
DEFAULT_TTL_S = 3600
_KEY_FILE = "signing-key.pem"
_JWKS_FILE = "jwks.json"
_KID = "mcp-tee-dev-1"


class DevIssuer:
    """Holds the dev signing key and mints tokens with it.

    Args:
        state_dir: Where the key pair lives; created on first use.

    Example:
        >>> issuer = DevIssuer(Path(".mcp-tee/dev-issuer"))
        >>> token = issuer.mint(scopes=["mcp:read"], audience="http://127.0.0.1:8080/mcp")
    """

    def __init__(self, state_dir: Path = DEFAULT_STATE_DIR) -> None:
        self.state_dir = Path(state_dir)

    @property
    def jwks_path(self) -> Path:
        """The public JWKS the server trusts."""
        return self.state_dir / _JWKS_FILE

    def ensure(self) -> None:
        """Create the key pair and JWKS when they do not exist yet."""
        key_path = self.state_dir / _KEY_FILE
        if key_path.exists() and self.jwks_path.exists():
            return
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        # A half-written pair is replaced whole. O_EXCL with mode 0600: the key is never
        # readable by others, not even for an instant.
        key_path.unlink(missing_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        import jwt  # only when a key is created: importing PyJWT is most of `mcp-tee dev-token`'s start-up

        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        public_jwk.update({"kid": _KID, "use": "sig", "alg": "RS256"})
        self.jwks_path.write_text(json.dumps({"keys": [public_jwk]}, indent=2), encoding="utf-8")

    def mint(self, *, scopes: Iterable[str], audience: str, subject: str = "dev-user",
             ttl_s: int = DEFAULT_TTL_S) -> str:
        """A signed RS256 access token for the local server."""
        self.ensure()
        # Our own key, written 0600 by `ensure`: the RSA consistency check guards against hostile keys
        # and costs 0.1 s of every `mcp-tee dev-token`.
        key = serialization.load_pem_private_key((self.state_dir / _KEY_FILE).read_bytes(), password=None,
                                                 unsafe_skip_rsa_key_validation=True)
        now = int(time.time())
        claims = {"iss": DEV_ISSUER_ID, "sub": subject, "aud": audience, "iat": now, "nbf": now,
                  "exp": now + ttl_s, "jti": uuid.uuid4().hex, "scope": " ".join(sorted(set(scopes)))}
        return _rs256_compact({"alg": "RS256", "kid": _KID, "typ": "JWT"}, claims, key)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rs256_compact(header: dict, claims: dict, key: rsa.RSAPrivateKey) -> str:
    """RFC 7515 compact JWS with RS256 (RSASSA-PKCS1-v1_5, SHA-256): what `jwt.encode` produces, without
    importing PyJWT. Only this dev issuer signs this way; every verifier still uses PyJWT."""
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"
