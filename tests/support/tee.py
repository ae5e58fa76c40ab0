"""Point a TEE-mode server at an attestation emulator: endpoints and names only, never a secret."""

from __future__ import annotations

from app.emulator.server import RunningEmulator


def tee_endpoints(emulator: RunningEmulator, identity_client_id: str, *, release_deadline_s: int = 5) -> dict[str, str]:
    """The same variables an ACI deployment sets; only their values point at the emulator."""
    return {
        "MCP_TEE_MODE": "tee",
        "SKR_ENDPOINT": emulator.sidecar_url,
        "MAA_ENDPOINT": emulator.maa_endpoint,
        "MAA_ISSUER": emulator.issuer,
        "AKV_ENDPOINT": emulator.akv_endpoint,
        "AKV_CA_FILE": str(emulator.ca_file),
        "SKR_KEY_NAME": emulator.key_name,
        "IDENTITY_CLIENT_ID": identity_client_id,
        "SKR_RELEASE_DEADLINE_S": str(release_deadline_s),
        # Many test clients share 127.0.0.1: the route's limits themselves are tested in-process.
        "MCP_ATTESTATION_PER_SECOND": "1000",
        "MCP_ATTESTATION_PER_SOURCE_PER_MINUTE": "60000",
        **emulator.identity_env,
    }
