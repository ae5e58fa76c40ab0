"""The TEE runtime: key release and fresh attestation through the SKR sidecar, with a per-step record.

Threat model: the released RSA key exists only in this process's (SEV-SNP
encrypted) memory; it is never written to disk, the environment, logs,
exception messages or ``repr``. A failed release is final (the caller decides
whether that stops start-up); a sidecar that is not up yet is retried with
bounded backoff until a deadline. Each step's outcome is recorded so
``attestation_status`` can say exactly which failed. The code is
endpoint-agnostic: the emulator and Azure differ only in URLs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from cryptography.hazmat.primitives.asymmetric import rsa

from app.wire.runtime_data import canonical_json, validate_nonce
from app.attestation.sidecar import SidecarClient, SidecarError, rsa_private_key_from_jwk

logger = logging.getLogger(__name__)

REQUIRED_ENV = ("SKR_ENDPOINT", "MAA_ENDPOINT", "AKV_ENDPOINT", "SKR_KEY_NAME", "IDENTITY_CLIENT_ID")
DEFAULT_RELEASE_DEADLINE_S = 120.0
INITIAL_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


class TeeStartupError(Exception):
    """A TEE-mode start-up step failed.

    Args:
        step: ``config``, ``plaintext_env``, ``key_release``, ``secret_read`` or ``unseal:<name>``.
        message: Secret-free description.
    """

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass(frozen=True)
class TeeConfig:
    """Where the TEE-mode dependencies live (the same names for the emulator and Azure).

    Args:
        skr_endpoint: SKR sidecar base URL (``SKR_ENDPOINT``, e.g. ``http://localhost:9000``).
        maa_endpoint: MAA host (``MAA_ENDPOINT``).
        akv_endpoint: Vault host without scheme (``AKV_ENDPOINT``).
        key_name: The releasable key (``SKR_KEY_NAME``).
        identity_client_id: User-assigned identity client id (``IDENTITY_CLIENT_ID``).
        release_deadline_s: Give up on key release after this many seconds (``SKR_RELEASE_DEADLINE_S``).
        vault_ca_file: Optional CA bundle trusted for the vault (``AKV_CA_FILE``; default: system CAs).
    """

    skr_endpoint: str
    maa_endpoint: str
    akv_endpoint: str
    key_name: str
    identity_client_id: str
    release_deadline_s: float = DEFAULT_RELEASE_DEADLINE_S
    vault_ca_file: str | None = None

    @property
    def vault_url(self) -> str:
        """The vault's URL: always https."""
        return "https://" + self.akv_endpoint.removeprefix("https://").rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TeeConfig:
        """Read the configuration; raise ``TeeStartupError("config", ...)`` naming missing variables."""
        missing = [name for name in REQUIRED_ENV if not environ.get(name)]
        if missing:
            raise TeeStartupError("config", f"TEE mode needs {', '.join(missing)}")
        try:
            deadline = float(environ.get("SKR_RELEASE_DEADLINE_S", DEFAULT_RELEASE_DEADLINE_S))
        except ValueError:
            raise TeeStartupError("config", "SKR_RELEASE_DEADLINE_S must be a number of seconds") from None
        return cls(environ["SKR_ENDPOINT"], environ["MAA_ENDPOINT"], environ["AKV_ENDPOINT"], environ["SKR_KEY_NAME"],
                   environ["IDENTITY_CLIENT_ID"], deadline, environ.get("AKV_CA_FILE") or None)


class TeeRuntime:
    """The TEE-mode orchestration the server calls at start-up and from ``attestation_status``.

    Args:
        config: Endpoints and limits.
        sleep: Awaitable sleep (injectable for tests).
        clock: Monotonic clock (injectable for tests).

    Example:
        >>> runtime = TeeRuntime(TeeConfig.from_env(os.environ))  # doctest: +SKIP
        >>> key = await runtime.release_key()
    """

    def __init__(self, config: TeeConfig, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._sidecar = SidecarClient(config.skr_endpoint)
        self._sleep = sleep
        self._clock = clock
        self._steps: dict[str, tuple[bool, str]] = {}

    def record(self, step: str, ok: bool, detail: str = "") -> None:
        self._steps[step] = (ok, detail)
        if ok:
            logger.info("tee step %s ok", step)
        else:
            logger.warning("tee step %s failed: %s", step, detail)

    def fail(self, step: str, detail: str) -> TeeStartupError:
        self.record(step, False, detail)
        return TeeStartupError(step, detail)

    async def release_key(self) -> rsa.RSAPrivateKey:
        """Ask the sidecar to release the key, retrying while it is not up yet; raise ``TeeStartupError``."""
        deadline = self._clock() + self.config.release_deadline_s
        delay = INITIAL_BACKOFF_S
        while True:
            try:
                jwk = await self._sidecar.release_key(self.config.maa_endpoint, self.config.akv_endpoint,
                                                      self.config.key_name)
                break
            except SidecarError as exc:
                remaining = deadline - self._clock()
                if not exc.retryable or remaining <= 0:
                    raise self.fail("key_release", exc.detail) from None
                logger.info("key release not ready (%s); retrying", exc.status or "unreachable")
                await self._sleep(min(delay, remaining))
                delay = min(delay * 2, MAX_BACKOFF_S)
        try:
            key = rsa_private_key_from_jwk(jwk)
        except ValueError as exc:
            raise self.fail("key_release", str(exc)) from None
        self.record("key_release", True)
        return key

    async def attest(self, runtime: Mapping[str, str]) -> str:
        """Return a fresh MAA token whose runtime data is ``runtime`` (see ``runtime_data.runtime_claims``).

        Raises:
            ValueError: the nonce is missing, too long or not printable ASCII.
            SidecarError: the sidecar refused or was unreachable (also recorded as step ``attest``).
        """
        validate_nonce(runtime.get("nonce"))
        try:
            token = await self._sidecar.attest_maa(self.config.maa_endpoint, canonical_json(dict(runtime)))
        except SidecarError as exc:
            self.record("attest", False, exc.detail)
            raise
        self.record("attest", True)
        return token

    def status(self) -> dict[str, Any]:
        """Per-step outcomes for ``attestation_status``: which step failed, if any."""
        steps = [{"step": step, "ok": ok, "detail": detail} for step, (ok, detail) in self._steps.items()]
        failed = [step["step"] for step in steps if not step["ok"]]
        return {"steps": steps, "failed_steps": failed}
