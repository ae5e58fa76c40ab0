"""Shared state of one emulator instance: issuer, key store, sealed secrets and managed-identity tokens.

NOT A TEE. Everything here lives in one ordinary process; it only exists so
the app's TEE code path can run offline against the real wire formats.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.emulator.issuer import MaaIssuer
from app.emulator.keystore import KeyStore

ACCESS_TOKEN_LIFETIME_S = 3600
MAX_ISSUED_TOKENS = 1024


@dataclass
class EmulatorState:
    """What the sidecar, issuer and vault stand-ins share.

    Args:
        issuer: The MAA-like token issuer.
        keystore: The RSA key and its release policy.
        maa_endpoint: The MAA host callers must name (``127.0.0.1:PORT``).
        vault_url: The vault stand-in's URL (``https://127.0.0.1:PORT``).
        identity_client_id: The only managed identity the token endpoint serves (None: any).
        secrets_file: Where stored (sealed) secrets persist across restarts (None: memory only).
    """

    issuer: MaaIssuer
    keystore: KeyStore
    maa_endpoint: str
    vault_url: str
    identity_client_id: str | None = None
    secrets_file: Path | None = None
    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _secrets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _tokens: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def akv_endpoint(self) -> str:
        """The vault host without scheme, as the SKR sidecar and ``AKV_ENDPOINT`` name it."""
        return self.vault_url.removeprefix("https://")

    def issue_access_token(self) -> tuple[str, int]:
        """Mint an opaque bearer token for the vault stand-in; return it with its expiry."""
        token, expires = secrets.token_urlsafe(32), int(time.time()) + ACCESS_TOKEN_LIFETIME_S
        with self._lock:
            if len(self._tokens) >= MAX_ISSUED_TOKENS:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[token] = expires
        return token, expires

    def access_token_valid(self, token: str) -> bool:
        """Whether ``token`` was minted here and has not expired."""
        with self._lock:
            return self._tokens.get(token, 0) > time.time()

    def put_secret(self, name: str, value: str, content_type: str | None = None) -> dict[str, Any]:
        """Store a new version of secret ``name`` and return its Key Vault secret bundle."""
        now = int(time.time())
        version = uuid.uuid4().hex
        bundle = {
            "value": value,
            "id": f"{self.vault_url}/secrets/{name}/{version}",
            "attributes": {"enabled": True, "created": now, "updated": now,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90},
            "tags": {},
        }
        if content_type:
            bundle["contentType"] = content_type
        with self._lock:
            self._secrets.setdefault(name, []).append(bundle)
            if self.secrets_file is not None:
                # Sealed values only: the vault never sees plaintext, so persisting them is safe.
                staging = self.secrets_file.with_suffix(".tmp")
                staging.write_text(json.dumps(self._secrets))
                os.replace(staging, self.secrets_file)
        return bundle

    def get_secret(self, name: str, version: str = "") -> dict[str, Any] | None:
        """The latest (or the named) version of secret ``name``, or None."""
        with self._lock:
            versions = self._secrets.get(name, [])
            if not version:
                return versions[-1] if versions else None
            return next((b for b in versions if b["id"].endswith("/" + version)), None)

    def load_secrets(self) -> None:
        """Restore the latest version of each secret from ``secrets_file``, re-homed to this vault's URL."""
        if self.secrets_file is None or not self.secrets_file.exists():
            return
        for name, versions in json.loads(self.secrets_file.read_text()).items():
            if versions:
                self.put_secret(name, versions[-1]["value"], versions[-1].get("contentType"))
