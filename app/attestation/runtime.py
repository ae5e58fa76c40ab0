"""TEE-mode start-up and attestation: key release via the SKR sidecar, unsealing, audit-key derivation.

Threat model: the released RSA key and the unsealed baseline secrets exist
only in this process's (SEV-SNP encrypted) memory. They are never written to
disk, the environment, logs, exception messages or ``repr``. Every failure is
final for the secrets concerned: there is no fallback to plaintext env vars,
and plaintext secret env vars are refused outright in TEE mode. Each step's
outcome is recorded so ``attestation_status`` can say exactly which failed.
The code is endpoint-agnostic: the emulator and Azure differ only in URLs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.attestation.runtime_data import canonical_json, runtime_claims, validate_nonce
from app.attestation.sidecar import SidecarClient, SidecarError, rsa_private_key_from_jwk
from app.secrets import SECRET_ENV_VARS
from app.secrets.keyvault import KeyVaultError, read_sealed_secrets
from app.secrets.sealing import SealingError, unseal

logger = logging.getLogger(__name__)

AUDIT_KEY_LABEL = b"mcp-tee audit-signing v1"
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


def refuse_plaintext_env(environ: Mapping[str, str]) -> None:
    """Fail closed if any plaintext baseline secret sits in the environment in TEE mode."""
    present = sorted(var for var in SECRET_ENV_VARS.values() if environ.get(var))
    if present:
        raise TeeStartupError("plaintext_env", f"TEE mode refuses plaintext secrets in the environment: "
                              f"unset {', '.join(present)} (they must come sealed from Key Vault)")


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


def derive_audit_signing_key(released: rsa.RSAPrivateKey) -> ed25519.Ed25519PrivateKey:
    """Derive the Ed25519 audit-signing key from the released RSA key (HKDF-SHA256, fixed label).

    Only code that obtained the key through attested release can produce it.
    """
    numbers = released.private_numbers()
    ikm = numbers.d.to_bytes((released.key_size + 7) // 8, "big")
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=AUDIT_KEY_LABEL).derive(ikm)
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


@dataclass
class ReleasedSecrets:
    """The baseline secrets unsealed in memory, and the derived audit-signing key.

    Args:
        audit_signing_key: Ed25519 key derived from the released key.
        failed: Secret name to the step that failed for it (``secret_read:<name>`` or ``unseal:<name>``).
    """

    audit_signing_key: ed25519.Ed25519PrivateKey
    failed: dict[str, str] = field(default_factory=dict)
    _values: dict[str, str] = field(default_factory=dict, repr=False)

    def get(self, name: str) -> str | None:
        """The plaintext of secret ``name``, or None when it was not released."""
        return self._values.get(name)

    @property
    def available(self) -> frozenset[str]:
        """Names of the secrets that unsealed."""
        return frozenset(self._values)

    def __repr__(self) -> str:
        return f"ReleasedSecrets(available={sorted(self._values)}, failed={self.failed})"


class TeeRuntime:
    """The TEE-mode orchestration the server calls at start-up and from ``attestation_status``.

    Args:
        config: Endpoints and limits.
        credential_factory: Builds the Key Vault credential (default: ``ManagedIdentityCredential``
            with the user-assigned client id).
        sleep: Awaitable sleep (injectable for tests).
        clock: Monotonic clock (injectable for tests).

    Example:
        >>> runtime = TeeRuntime(TeeConfig.from_env(os.environ))  # doctest: +SKIP
        >>> released = await runtime.release(["github-token", "db-connection-string", "webhook-url"])
    """

    def __init__(self, config: TeeConfig, *, credential_factory: Callable[[], Any] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._sidecar = SidecarClient(config.skr_endpoint)
        self._credential_factory = credential_factory or self._managed_identity
        self._sleep = sleep
        self._clock = clock
        self._steps: dict[str, tuple[bool, str]] = {}

    def _managed_identity(self) -> Any:
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=self.config.identity_client_id)

    def _record(self, step: str, ok: bool, detail: str = "") -> None:
        self._steps[step] = (ok, detail)
        if ok:
            logger.info("tee step %s ok", step)
        else:
            logger.warning("tee step %s failed: %s", step, detail)

    def _fail(self, step: str, detail: str) -> TeeStartupError:
        self._record(step, False, detail)
        return TeeStartupError(step, detail)

    async def _release_key(self) -> rsa.RSAPrivateKey:
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
                    raise self._fail("key_release", exc.detail) from None
                logger.info("key release not ready (%s); retrying", exc.status or "unreachable")
                await self._sleep(min(delay, remaining))
                delay = min(delay * 2, MAX_BACKOFF_S)
        try:
            key = rsa_private_key_from_jwk(jwk)
        except ValueError as exc:
            raise self._fail("key_release", str(exc)) from None
        self._record("key_release", True)
        return key

    def _read_sealed(self, names: list[str]) -> dict[str, str]:
        credential = self._credential_factory()
        try:
            return read_sealed_secrets(self.config.vault_url, names, credential,
                                       connection_verify=self.config.vault_ca_file)
        finally:
            close = getattr(credential, "close", None)
            if close is not None:
                close()

    async def release(self, names: Iterable[str]) -> ReleasedSecrets:
        """Release the key, read and unseal ``names``; raise :class:`TeeStartupError` if nothing can be read.

        Per-secret failures do not raise: they land in ``ReleasedSecrets.failed`` so the server can
        refuse to start (``--require-secrets``) or disable only the affected tools.
        """
        names = list(names)
        key = await self._release_key()
        try:
            sealed = await asyncio.to_thread(self._read_sealed, names)
        except KeyVaultError as exc:
            raise self._fail("secret_read", str(exc)) from None
        except Exception as exc:  # Fail closed: an unexpected credential error is a failed read.
            raise self._fail("secret_read", f"vault read failed ({type(exc).__name__})") from None
        self._record("secret_read", True)
        released = ReleasedSecrets(audit_signing_key=derive_audit_signing_key(key))
        for name in names:
            if name not in sealed:
                released.failed[name] = f"secret_read:{name}"
                self._record(f"secret_read:{name}", False, "sealed secret not found in the vault")
                continue
            try:
                released._values[name] = unseal(sealed[name], key).decode("utf-8")
            except (SealingError, UnicodeDecodeError) as exc:
                released.failed[name] = f"unseal:{name}"
                self._record(f"unseal:{name}", False, str(exc) if isinstance(exc, SealingError) else "not UTF-8")
                continue
            self._record(f"unseal:{name}", True)
        return released

    async def attest(self, nonce: str, session_pub: str, tools_digest: str, audit_pub: str | None = None) -> str:
        """Return a fresh MAA token whose runtime data binds ``nonce``, ``session_pub`` and ``tools_digest``.

        Raises:
            ValueError: the nonce is missing, too long or not printable ASCII.
            SidecarError: the sidecar refused or was unreachable (also recorded as step ``attest``).
        """
        runtime = runtime_claims(validate_nonce(nonce), session_pub, tools_digest, audit_pub)
        try:
            token = await self._sidecar.attest_maa(self.config.maa_endpoint, canonical_json(runtime))
        except SidecarError as exc:
            self._record("attest", False, exc.detail)
            raise
        self._record("attest", True)
        return token

    def status(self) -> dict[str, Any]:
        """Per-step outcomes for ``attestation_status``: which step failed, if any."""
        steps = [{"step": step, "ok": ok, "detail": detail} for step, (ok, detail) in self._steps.items()]
        failed = [step["step"] for step in steps if not step["ok"]]
        return {"steps": steps, "failed_steps": failed}
