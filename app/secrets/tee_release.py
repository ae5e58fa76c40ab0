"""TEE-mode secret source: attested key release, then sealed Key Vault secrets unsealed in memory.

Threat model: there is no fallback. Plaintext secret env vars are refused, and a
failed release, read or unseal either stops start-up (`--require-secrets`, the
default) or leaves exactly the affected tools disabled, with the failing step
named in `attestation_status`. Plaintexts, the released key and the keys derived
from it live only in this process's memory, never in `repr`, logs or errors.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.attestation.evidence import maa_issuer
from app.attestation.runtime import TeeConfig, TeeRuntime, TeeStartupError
from app.secrets import SECRET_ENV_VARS
from app.secrets.bundle import SecretBundle
from app.secrets.jwe import SealingError, unseal
from app.secrets.keyvault import KeyVaultError, read_sealed_secrets

SEALED_SOURCE = "sealed-keyvault"
AUDIT_KEY_LABEL = b"mcp-tee audit-signing v1"
CAPABILITY_ROOT_LABEL = b"mcp-tee capability-root v1"

CredentialFactory = Callable[[TeeConfig], Any]


class StartupRefused(RuntimeError):
    """TEE start-up failed closed; the message names the step and is safe to print."""


def refuse_plaintext_env(environ: Mapping[str, str]) -> None:
    """Fail closed if any plaintext baseline secret sits in the environment in TEE mode."""
    present = sorted(var for var in SECRET_ENV_VARS.values() if environ.get(var))
    if present:
        raise TeeStartupError("plaintext_env", f"TEE mode refuses plaintext secrets in the environment: "
                              f"unset {', '.join(present)} (they must come sealed from Key Vault)")


def derive_seed(released: rsa.RSAPrivateKey, label: bytes) -> bytes:
    """32 bytes derived from the released RSA key under ``label`` (HKDF-SHA256); one label per purpose.

    Only code that obtained the key through attested release can produce them.
    """
    numbers = released.private_numbers()
    ikm = numbers.d.to_bytes((released.key_size + 7) // 8, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(ikm)


def derive_audit_signing_key(released: rsa.RSAPrivateKey) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 audit-signing key, derived from the released RSA key."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(derive_seed(released, AUDIT_KEY_LABEL))


@dataclass
class ReleasedSecrets:
    """The baseline secrets unsealed in memory, and the keys derived from the released key.

    Args:
        audit_signing_key: Ed25519 key derived from the released key.
        capability_root_seed: Seed of the capability root key (``app.delegation.keys``), derived likewise.
        failed: Secret name to the step that failed for it (``secret_read:<name>`` or ``unseal:<name>``).
    """

    audit_signing_key: ed25519.Ed25519PrivateKey
    capability_root_seed: bytes = field(default=b"", repr=False)
    failed: dict[str, str] = field(default_factory=dict)
    _values: dict[str, str] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> str | None:
        """The plaintext of secret ``name``, or None when it was not released."""
        return self._values.get(name)

    @property
    def available(self) -> frozenset[str]:
        """Names of the secrets that unsealed."""
        return frozenset(self._values)

    def __repr__(self) -> str:
        return f"ReleasedSecrets(available={sorted(self._values)}, failed={self.failed})"


def managed_identity(config: TeeConfig) -> Any:
    """The group's user-assigned identity, which Key Vault grants the secrets to."""
    from azure.identity import ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=config.identity_client_id)


def _read_sealed(config: TeeConfig, names: list[str], credential_factory: CredentialFactory) -> dict[str, str]:
    credential = credential_factory(config)
    try:
        return read_sealed_secrets(config.vault_url, names, credential, connection_verify=config.vault_ca_file)
    finally:
        close = getattr(credential, "close", None)
        if close is not None:
            close()


async def release_secrets(runtime: TeeRuntime, names: Iterable[str], *,
                          credential_factory: CredentialFactory = managed_identity) -> ReleasedSecrets:
    """Release the key, read and unseal ``names``; raise :class:`TeeStartupError` if nothing can be read.

    Per-secret failures do not raise: they land in ``ReleasedSecrets.failed`` so the server can
    refuse to start (``--require-secrets``) or disable only the affected tools.
    """
    names = list(names)
    key = await runtime.release_key()
    try:
        sealed = await asyncio.to_thread(_read_sealed, runtime.config, names, credential_factory)
    except KeyVaultError as exc:
        raise runtime.fail("secret_read", str(exc)) from None
    except Exception as exc:  # Fail closed: an unexpected credential error is a failed read.
        raise runtime.fail("secret_read", f"vault read failed ({type(exc).__name__})") from None
    runtime.record("secret_read", True)
    released = ReleasedSecrets(audit_signing_key=derive_audit_signing_key(key),
                               capability_root_seed=derive_seed(key, CAPABILITY_ROOT_LABEL))
    for name in names:
        if name not in sealed:
            released.failed[name] = f"secret_read:{name}"
            runtime.record(f"secret_read:{name}", False, "sealed secret not found in the vault")
            continue
        try:
            released._values[name] = unseal(sealed[name], key).decode("utf-8")
        except (SealingError, UnicodeDecodeError) as exc:
            released.failed[name] = f"unseal:{name}"
            runtime.record(f"unseal:{name}", False, str(exc) if isinstance(exc, SealingError) else "not UTF-8")
            continue
        runtime.record(f"unseal:{name}", True)
    return released


@dataclass(frozen=True)
class TeeStartup:
    """What attested start-up produced."""

    secrets: SecretBundle
    audit_key: ed25519.Ed25519PrivateKey | None
    runtime: TeeRuntime
    issuer: str
    capability_root_seed: bytes | None = field(default=None, repr=False)


async def start_tee(env: Mapping[str, str] = os.environ, *, require_secrets: bool = True) -> TeeStartup:
    """Release the key through the SKR sidecar and unseal the baseline secrets."""
    try:
        refuse_plaintext_env(env)
        config = TeeConfig.from_env(env)
    except TeeStartupError as exc:
        raise StartupRefused(f"TEE start-up refused: {exc}") from None
    runtime = TeeRuntime(config)
    issuer = maa_issuer(config.maa_endpoint, env.get("MAA_ISSUER"))
    names = list(SECRET_ENV_VARS)
    try:
        released = await release_secrets(runtime, names)
    except TeeStartupError as exc:
        if require_secrets:
            raise StartupRefused(f"TEE start-up refused: {exc}") from None
        failures = {name: f"{exc.step} failed" for name in names}
        return TeeStartup(SecretBundle(source=SEALED_SOURCE, failures=failures), None, runtime, issuer)
    failures = {name: f"{step} failed" for name, step in released.failed.items()}
    if failures and require_secrets:
        raise StartupRefused(f"TEE start-up refused: {', '.join(sorted(released.failed.values()))} failed")
    values = {name: released.get(name) for name in released.available}
    bundle = SecretBundle(values=values, source=SEALED_SOURCE, failures=failures)
    return TeeStartup(bundle, released.audit_signing_key, runtime, issuer, released.capability_root_seed)
