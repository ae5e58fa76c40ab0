"""Capability delegation: Biscuit tokens minted inside the TEE, narrowed offline by any holder, enforced per call."""
