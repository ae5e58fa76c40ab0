"""The Azure credential an operator's command uses: a named managed identity, or the default chain (`az login`)."""

from __future__ import annotations

from typing import Any


def operator_credential(identity_client_id: str | None) -> Any:
    """`ManagedIdentityCredential(client_id=…)` when an identity is named, else `DefaultAzureCredential()`."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    return ManagedIdentityCredential(client_id=identity_client_id) if identity_client_id else DefaultAzureCredential()
