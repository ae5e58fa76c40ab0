"""Builds the Key Vault secure-key-release policy that pins the attested CCE policy.

Threat model: the release policy is the only thing standing between an operator
and the RSA key that unseals the baseline secrets. It must pin the exact
container-group measurement (hostdata), the one MAA authority we trust, a
non-debuggable guest at VMPL 0, and Azure's compliance verdict for the utility
VM that ACI confidential containers run in (`azure-compliant-uvm`, not the
`-cvm` value that confidential *VMs* report).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

RELEASE_POLICY_VERSION = "1.0.0"
ACI_COMPLIANCE_STATUS = "azure-compliant-uvm"
_HOSTDATA = re.compile(r"^[0-9a-f]{64}$")


def hostdata_of(cce_policy_b64: str) -> str:
    """Return the lowercase hex SHA-256 of the decoded CCE policy: SEV-SNP's hostdata."""
    return hashlib.sha256(base64.b64decode(cce_policy_b64, validate=True)).hexdigest()


def maa_authority(maa_endpoint: str) -> str:
    """Normalise an MAA endpoint (host, or URL) into the `https://host` authority form."""
    host = maa_endpoint.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    if not host or "/" in host:
        raise ValueError(f"MAA endpoint must be a bare host or https://host, got {maa_endpoint!r}")
    return f"https://{host}"


def build_release_policy(maa_endpoint: str, hostdata: str, *, authority: str | None = None) -> dict[str, Any]:
    """Build the release policy dict for one MAA instance and one hostdata.

    Args:
        maa_endpoint: The MAA instance host (e.g. ``sharedeus.eus.attest.azure.net``).
        hostdata: 64 lowercase hex characters, see :func:`hostdata_of`.
        authority: Override the authority URL verbatim (the local emulator issues
            tokens from ``http://127.0.0.1:PORT``).
    """
    hostdata = hostdata.lower()
    if not _HOSTDATA.match(hostdata):
        raise ValueError("hostdata must be 64 hex characters (sha256 of the decoded CCE policy)")
    return {
        "version": RELEASE_POLICY_VERSION,
        "anyOf": [
            {
                "authority": authority or maa_authority(maa_endpoint),
                "allOf": [
                    {"claim": "x-ms-sevsnpvm-hostdata", "equals": hostdata},
                    {"claim": "x-ms-compliance-status", "equals": ACI_COMPLIANCE_STATUS},
                    {"claim": "x-ms-sevsnpvm-is-debuggable", "equals": "false"},
                    {"claim": "x-ms-sevsnpvm-vmpl", "equals": "0"},
                ],
            }
        ],
    }


def encode_release_policy(policy: dict[str, Any]) -> str:
    """Encode a policy as the unpadded base64url of its compact JSON (`release_policy.data`)."""
    raw = json.dumps(policy, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
