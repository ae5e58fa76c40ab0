"""Non-TEE secret source: plaintext environment variables, for local development only."""

from __future__ import annotations

from typing import Mapping

from app.secrets import SECRET_ENV_VARS
from app.secrets.bundle import SecretBundle


def load_env_secrets(env: Mapping[str, str]) -> SecretBundle:
    """Read the baseline secrets from plaintext env vars; a missing one disables its tool."""
    values = {name: env[var] for name, var in SECRET_ENV_VARS.items() if env.get(var)}
    failures = {name: f"{var} is not set" for name, var in SECRET_ENV_VARS.items() if not env.get(var)}
    return SecretBundle(values=values, source="env", failures=failures)
