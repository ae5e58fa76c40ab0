"""An in-memory holder for baseline secrets that never prints its values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from app.secrets import SECRET_ENV_VARS


@dataclass(frozen=True, repr=False)
class SecretBundle:
    """Baseline secrets by Key Vault name, plus where they came from and what failed.

    Args:
        values: Secret name -> plaintext. Only names from `SECRET_ENV_VARS`.
        source: `env` (plaintext environment, dev only) or `sealed-keyvault`.
        failures: Secret name (or step) -> a short, secret-free reason it is missing.
    """

    values: Mapping[str, str] = field(default_factory=dict)
    source: str = "none"
    failures: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.values.get(name) or None

    def loaded(self) -> dict[str, bool]:
        """Secret name -> whether it is present; never the value."""
        return {name: bool(self.values.get(name)) for name in SECRET_ENV_VARS}

    def plaintexts(self) -> list[str]:
        """The values, for the redactor only."""
        return [value for value in self.values.values() if value]

    def __repr__(self) -> str:
        return f"SecretBundle(source={self.source!r}, loaded={self.loaded()!r})"
