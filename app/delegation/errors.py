"""The one refusal path for capability tokens: log the reason (never the token) and deny."""

from __future__ import annotations

import logging
from typing import NoReturn

from app.errors import CapabilityDenied, deny

logger = logging.getLogger(__name__)
LAYER = "delegation"


class CapabilityRefused(CapabilityDenied):
    """A capability token was refused; the message is built from constants and never quotes the token."""


def reject(reason: str) -> NoReturn:
    """Log and raise the refusal (the audit records it as denied by the `delegation` layer)."""
    logger.info("capability refused: %s", reason)
    deny(reason, layer=LAYER, error=CapabilityRefused)
