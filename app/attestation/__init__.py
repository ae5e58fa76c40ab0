"""Attestation: the SKR sidecar client, the MAA token verifier and the TEE runtime."""
