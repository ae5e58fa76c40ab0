"""Non-TEE secret source: plaintext environment variables, for local development only."""

from __future__ import annotations

from typing import Mapping

from app.secrets import SECRET_ENV_VARS
from app.secrets.bundle import SecretBundle


class PlaintextSecretsInTeeMode(RuntimeError):
    """TEE mode found plaintext secret env vars; they would defeat attestation-gated release."""


def load_env_secrets(env: Mapping[str, str]) -> SecretBundle:
    """Read the baseline secrets from plaintext env vars; a missing one disables its tool."""
    values = {name: env[var] for name, var in SECRET_ENV_VARS.items() if env.get(var)}
    failures = {name: f"{var} is not set" for name, var in SECRET_ENV_VARS.items() if not env.get(var)}
    return SecretBundle(values=values, source="env", failures=failures)


def refuse_plaintext_in_tee(env: Mapping[str, str]) -> None:
    """Fail closed: in TEE mode a plaintext secret in env is a deployment error, not a fallback."""
    present = sorted(var for var in SECRET_ENV_VARS.values() if env.get(var))
    if present:
        raise PlaintextSecretsInTeeMode(
            f"TEE mode refuses plaintext secrets in the environment ({', '.join(present)}); "
            "seal them into Key Vault with `mcp-tee seal` and remove them from the container spec"
        )
