"""The capability root key: the Ed25519 key that signs every delegation token's first block.

Threat model: whoever holds the root private key can mint any capability, so in TEE mode it is
derived inside the TEE from the attestation-released key (HKDF under its own label, beside the
audit key) and never leaves process memory; its public half is bound into the attestation
runtime data, so a delegating agent knows only the attested code can mint and check tokens.
Outside a TEE the key is either per process (tokens die with the process) or read from the
development state directory (file 0600, directory 0700), and its source says NOT A TEE, so a
development root can never pass as an attested one. The private key has no ``repr`` and is
never logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from biscuit_auth import Algorithm, KeyPair, PrivateKey, PublicKey

from app.wire.capability_token import ED25519_KEY_BYTES, public_key_b64

SEED_BYTES = ED25519_KEY_BYTES
DEV_ROOT_KEY_FILE = "capability-root.key"
# Where the key came from; only the first is attested.
SOURCE_TEE = "tee-derived"
SOURCE_DEV_STATE = "dev-state-dir (NOT A TEE)"
SOURCE_PER_PROCESS = "per-process (NOT A TEE)"
ROOT_KEY_SOURCES = frozenset({SOURCE_TEE, SOURCE_DEV_STATE, SOURCE_PER_PROCESS})


@dataclass(frozen=True)
class CapabilityRoot:
    """The root key pair and where it came from.

    Args:
        private_key: Signs root blocks; never printed.
        source: One of :data:`ROOT_KEY_SOURCES`.

    Example:
        >>> root = CapabilityRoot.per_process()
        >>> root.source
        'per-process (NOT A TEE)'
    """

    private_key: PrivateKey = field(repr=False)
    source: str

    def __post_init__(self) -> None:
        if self.source not in ROOT_KEY_SOURCES:
            raise ValueError(f"unknown capability root source {self.source!r}")

    @cached_property
    def public_key(self) -> PublicKey:
        return KeyPair.from_private_key(self.private_key).public_key

    @cached_property
    def public_key_b64(self) -> str:
        """Standard base64 of the raw 32-byte public key: what attestation binds as ``capability_pub``."""
        return public_key_b64(self.public_key)

    @property
    def attested(self) -> bool:
        return self.source == SOURCE_TEE

    @classmethod
    def from_seed(cls, seed: bytes, source: str) -> CapabilityRoot:
        """A root from 32 secret bytes (in TEE mode: the HKDF output over the released key)."""
        if len(seed) != SEED_BYTES:
            raise ValueError(f"the capability root seed must be {SEED_BYTES} bytes")
        return cls(PrivateKey.from_bytes(seed, Algorithm.Ed25519), source)

    @classmethod
    def per_process(cls) -> CapabilityRoot:
        """A fresh random root: every token dies with this process."""
        return cls.from_seed(os.urandom(SEED_BYTES), SOURCE_PER_PROCESS)

    @classmethod
    def from_dev_state_dir(cls, state_dir: Path) -> CapabilityRoot:
        """The development root kept in ``state_dir`` (created 0600 on first use), so tokens survive restarts."""
        state_dir = Path(state_dir)
        path = state_dir / DEV_ROOT_KEY_FILE
        if not path.exists():
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(os.urandom(SEED_BYTES))
        return cls.from_seed(path.read_bytes(), SOURCE_DEV_STATE)
