"""The one refusal path for capability tokens: log the reason (never the token) and raise."""

from __future__ import annotations

import logging
from typing import NoReturn

from app.errors import CapabilityDenied

logger = logging.getLogger(__name__)


class CapabilityRefused(CapabilityDenied):
    """A capability token was refused; the message is built from constants and never quotes the token."""


def reject(reason: str) -> NoReturn:
    """Log and raise the refusal."""
    logger.info("capability refused: %s", reason)
    raise CapabilityRefused(reason) from None
