"""Canary secret values: if one of these shows up in any log, error or output, a secret leaked."""

from __future__ import annotations

from typing import Iterable

CANARY_GITHUB_TOKEN = "ghp_CANARYgithubTOKEN0000000000000000001"
CANARY_DB_PASSWORD = "CanaryDbPassw0rd-7f3e9a"
CANARY_WEBHOOK_PATH = "/hooks/T000CANARY/B000CANARY/canaryWebhookSecret42"
ALL_CANARIES = (CANARY_GITHUB_TOKEN, CANARY_DB_PASSWORD, CANARY_WEBHOOK_PATH.rsplit("/", 1)[-1])


def assert_no_canary(texts: Iterable[str], where: str) -> None:
    """Fail naming the canary and the place it leaked to (never printing the surrounding text)."""
    for text in texts:
        for canary in ALL_CANARIES:
            assert canary not in text, f"canary secret {canary[:6]}… leaked into {where}"
