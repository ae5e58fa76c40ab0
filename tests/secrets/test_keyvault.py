"""The real Azure Key Vault SDK clients against the emulator's HTTPS vault and identity stand-ins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.core.pipeline.policies import RetryPolicy
from azure.identity import ManagedIdentityCredential
from cryptography.hazmat.primitives.asymmetric import rsa

from app.emulator.server import RunningEmulator
from app.secrets.keyvault import KeyVaultError, fetch_public_key, read_sealed_secrets, write_sealed_secret
from app.secrets.jwe import seal, unseal
from tests.support.emulator_fixtures import CLIENT_ID


@pytest.fixture
def credential(emulator: RunningEmulator) -> Iterator[ManagedIdentityCredential]:
    with ManagedIdentityCredential(client_id=CLIENT_ID) as credential:
        yield credential


class TestRealSdkOverHttps:
    def test_write_then_read_sealed_secrets(self, emulator: RunningEmulator, credential: ManagedIdentityCredential) -> None:
        sealed = seal(b"value", emulator.public_key)
        secret_id = write_sealed_secret(emulator.vault_url, "github-token", sealed, credential,
                                        connection_verify=emulator.ca_file)
        assert secret_id.startswith(emulator.vault_url + "/secrets/github-token/")
        found = read_sealed_secrets(emulator.vault_url, ["github-token", "webhook-url"], credential,
                                    connection_verify=emulator.ca_file)
        assert found == {"github-token": sealed}  # A missing secret is absent, not an error.

    def test_public_key_from_key_client_seals_for_the_releasable_key(
            self, emulator: RunningEmulator, credential: ManagedIdentityCredential) -> None:
        public_key, kid = fetch_public_key(emulator.vault_url, emulator.key_name, credential,
                                           connection_verify=emulator.ca_file)
        assert isinstance(public_key, rsa.RSAPublicKey)
        assert kid.startswith(f"{emulator.vault_url}/keys/{emulator.key_name}/")
        assert unseal(seal(b"x", public_key), emulator.state.keystore.key) == b"x"

    def test_unknown_key_is_a_keyvault_error(self, emulator: RunningEmulator,
                                             credential: ManagedIdentityCredential) -> None:
        with pytest.raises(KeyVaultError, match="reading key 'nope'"):
            fetch_public_key(emulator.vault_url, "nope", credential, connection_verify=emulator.ca_file)


class TestFailClosed:
    def test_tls_is_verified_without_the_ca_file(self, emulator: RunningEmulator, credential: ManagedIdentityCredential,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        # The SDK retries the refused handshake as it would in production; only its back-off pauses go.
        monkeypatch.setattr(RetryPolicy, "_sleep_backoff", lambda self, settings, transport: None)
        with pytest.raises(KeyVaultError, match="ServiceRequestError"):
            read_sealed_secrets(emulator.vault_url, ["github-token"], credential)

    def test_another_identity_gets_no_token(self, emulator: RunningEmulator) -> None:
        with ManagedIdentityCredential(client_id="someone-else") as stranger, pytest.raises(KeyVaultError):
            read_sealed_secrets(emulator.vault_url, ["github-token"], stranger, connection_verify=emulator.ca_file)

    def test_wrong_identity_header_gets_no_token(self, emulator: RunningEmulator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("IDENTITY_HEADER", "forged")
        with ManagedIdentityCredential(client_id=CLIENT_ID) as forger, pytest.raises(KeyVaultError):
            read_sealed_secrets(emulator.vault_url, ["github-token"], forger, connection_verify=emulator.ca_file)

    async def test_vault_demands_a_bearer_token(self, emulator: RunningEmulator) -> None:
        import ssl

        import httpx

        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca_file)) as client:
            response = await client.get(emulator.vault_url + "/secrets/github-token?api-version=7.5",
                                        headers={"Authorization": "Bearer made-up"})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer authorization=")
