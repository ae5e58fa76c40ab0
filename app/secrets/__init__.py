"""Baseline secrets: where they come from (plaintext env in dev, sealed Key Vault secrets in a TEE)."""

from __future__ import annotations

GITHUB_TOKEN = "github-token"
DB_CONNECTION_STRING = "db-connection-string"
WEBHOOK_URL = "webhook-url"

# Key Vault secret name -> the plaintext env var that holds it in non-TEE mode.
SECRET_ENV_VARS: dict[str, str] = {
    GITHUB_TOKEN: "GITHUB_TOKEN",
    DB_CONNECTION_STRING: "DB_CONNECTION_STRING",
    WEBHOOK_URL: "WEBHOOK_URL",
}
