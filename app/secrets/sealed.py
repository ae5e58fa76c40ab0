"""TEE-mode secret source: attested key release, then sealed Key Vault secrets unsealed in memory.

Threat model: there is no fallback. Plaintext secret env vars are refused, and a
failed release, read or unseal either stops start-up (`--require-secrets`, the
default) or leaves exactly the affected tools disabled, with the failing step
named in `attestation_status`. Plaintexts and the released key live only in
this process's memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.attestation.provider import maa_issuer
from app.attestation.runtime import TeeConfig, TeeRuntime, TeeStartupError, refuse_plaintext_env
from app.secrets import SECRET_ENV_VARS
from app.secrets.bundle import SecretBundle

SEALED_SOURCE = "sealed-keyvault"


class StartupRefused(RuntimeError):
    """TEE start-up failed closed; the message names the step and is safe to print."""


@dataclass(frozen=True)
class TeeStartup:
    """What attested start-up produced."""

    secrets: SecretBundle
    audit_key: Ed25519PrivateKey | None
    runtime: TeeRuntime
    issuer: str


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
        released = await runtime.release(names)
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
    return TeeStartup(bundle, released.audit_signing_key, runtime, issuer)
