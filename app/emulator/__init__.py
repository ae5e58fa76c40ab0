"""Offline attestation emulator (NOT A TEE): SKR sidecar, MAA-like issuer and Key Vault stand-ins on loopback."""

from app.emulator.server import RunningEmulator, start_emulator

__all__ = ["RunningEmulator", "start_emulator"]
