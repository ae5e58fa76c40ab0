"""CrossGuard rule logic as plain functions over (resource type, camelCase props) -> violation messages.

Threat model: the program is not the only way resources change; a refactor, a copy-pasted snippet
or a hurried hotfix can drop `sku: Confidential`, expose the sidecar or put a token in env. These
rules check the resource inputs the engine is about to send, independently of the program's own
code. Each function returns the list of violations; an empty list means the resource passes. A
value the rule cannot interpret counts as a violation (fail closed). During preview, unknown
values raise from the policy SDK's proxy and the engine reports "cannot check yet" instead.
Messages never echo an env value, since that value may be the very secret being caught.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, Callable, Iterator, Mapping

CONTAINER_GROUP = "azure-native:containerinstance:ContainerGroup"
# The tag that declares `retain_on_delete` (the analyzer protocol does not carry that option; the
# program's mocks tests check that the tag and the option always go together).
RETAIN_TAG = "mcp-tee-retain-on-delete"
VAULT = "azure-native:keyvault:Vault"
KEY = "azure-native:keyvault:Key"
SKR_IMAGE_PREFIX = "mcr.microsoft.com/aci/skr"
_DIGEST_REF = re.compile(r"@sha256:[0-9a-f]{64}$")
_HOSTDATA = re.compile(r"^[0-9a-f]{64}$")
# Claims every release branch must pin besides hostdata (booleans and ints in Key Vault's string form).
REQUIRED_RELEASE_CLAIMS = {"x-ms-sevsnpvm-is-debuggable": "false", "x-ms-compliance-status": "azure-compliant-uvm",
                           "x-ms-sevsnpvm-vmpl": "0"}
# Env var names that say "I am a credential". Matched as substrings of the upper-cased name.
SECRET_NAME_MARKERS = frozenset({
    "TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "PRIVATE_KEY", "ACCESS_KEY",
    "CONNECTION_STRING", "CONN_STR", "CREDENTIAL", "WEBHOOK_URL", "SAS_KEY", "CLIENT_SECRET",
})
# Value shapes of common credentials: GitHub/Slack tokens, AWS keys, PEM, JWTs, URLs with a
# password, Azure connection strings and SAS signatures.
SECRET_VALUE_PATTERNS = (
    re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),
    re.compile(r"(?i)\b(AccountKey|SharedAccessKey|Password|Pwd)="),
    re.compile(r"(?i)[?&]sig=[A-Za-z0-9%+/=]{16,}"),
    re.compile(r"hooks\.slack\.com/services/"),
)
Rule = Callable[[str, Mapping[str, Any]], list[str]]


def _containers(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    # Init containers run inside the same group and under the same policy: check them too.
    yield from props.get("containers") or []
    yield from props.get("initContainers") or []


def _props_of(container: Mapping[str, Any]) -> Mapping[str, Any]:
    # ARM nests container fields under "properties"; the Pulumi inputs do not.
    return container.get("properties") or container


def confidential_group(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every ACI group is `Confidential` and carries a CCE policy."""
    if resource_type != CONTAINER_GROUP:
        return []
    violations = []
    if props.get("sku") != "Confidential":
        violations.append("container group must use sku 'Confidential' (AMD SEV-SNP)")
    policy = (props.get("confidentialComputeProperties") or {}).get("ccePolicy")
    if not isinstance(policy, str) or not policy.strip():
        violations.append("container group must carry confidentialComputeProperties.ccePolicy")
    return violations


def premium_vault(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Key Vaults are Premium, RBAC-only, with soft delete and purge protection."""
    if resource_type != VAULT:
        return []
    vault = props.get("properties") or {}
    violations = []
    if str((vault.get("sku") or {}).get("name", "")).lower() != "premium":
        violations.append("key vault must be Premium (HSM-backed keys for secure key release)")
    if vault.get("enablePurgeProtection") is not True:
        violations.append("key vault must enable purge protection")
    if vault.get("enableSoftDelete") is False:
        violations.append("key vault must keep soft delete on")
    if vault.get("enableRbacAuthorization") is not True:
        violations.append("key vault must use RBAC authorization")
    if vault.get("accessPolicies"):
        violations.append("key vault must not use access policies")
    return violations


def _decode_release_policy(data: Any) -> Any:
    text = str(data)
    padded = text + "=" * (-len(text) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


def _branch_violations(index: int, branch: Any) -> list[str]:
    """What one `anyOf` branch fails to pin: every branch is a way to get the key."""
    if not isinstance(branch, Mapping):
        return [f"release policy branch {index} is not an object"]
    violations = []
    authority = branch.get("authority")
    if not (isinstance(authority, str) and authority.startswith("https://")):
        violations.append(f"release policy branch {index} must name an https:// attestation authority")
    clauses = branch.get("allOf") if isinstance(branch.get("allOf"), list) else []
    equals = {c.get("claim"): str(c.get("equals")).lower() for c in clauses if isinstance(c, Mapping) and "equals" in c}
    if not _HOSTDATA.match(equals.get("x-ms-sevsnpvm-hostdata", "")):
        violations.append(f"release policy branch {index} must pin x-ms-sevsnpvm-hostdata")
    for claim, wanted in REQUIRED_RELEASE_CLAIMS.items():
        if equals.get(claim) != wanted:
            violations.append(f"release policy branch {index} must require {claim} == {wanted}")
    return violations


def exportable_key_release(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every exportable key's release policy pins, in every branch, an https authority, hostdata,
    not debuggable, the ACI compliance verdict and VMPL 0."""
    if resource_type != KEY:
        return []
    key = props.get("properties") or {}
    if (key.get("attributes") or {}).get("exportable") is not True:
        return []
    data = (key.get("releasePolicy") or {}).get("data")
    if not data:
        return ["exportable key must carry a release policy"]
    try:
        branches = _decode_release_policy(data)["anyOf"]
    except (ValueError, KeyError, TypeError):
        return ["exportable key's release policy is not a base64url JSON policy with anyOf"]
    if not isinstance(branches, list) or not branches:
        return ["exportable key's release policy has no authority branches"]
    return [violation for index, branch in enumerate(branches) for violation in _branch_violations(index, branch)]


def retained_release_key(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every exportable (SKR) key is kept when it leaves the program: never deleted, only disabled.

    A key replaced for a new hostdata would otherwise be deleted through the Key Vault data plane,
    which the deployer may not do (the `up` fails), and a group still on the old image could no
    longer restart.
    """
    if resource_type != KEY:
        return []
    if ((props.get("properties") or {}).get("attributes") or {}).get("exportable") is not True:
        return []
    if str((props.get("tags") or {}).get(RETAIN_TAG, "")).lower() != "true":
        return [f"exportable key must be retained on delete (ResourceOptions(retain_on_delete=True), "
                f"declared by the tag {RETAIN_TAG}=true)"]
    return []


def expiring_release_key(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every exportable key has an expiry, so a key nobody rotates stops releasing on a known date."""
    if resource_type != KEY:
        return []
    attributes = (props.get("properties") or {}).get("attributes") or {}
    if attributes.get("exportable") is not True:
        return []
    expires = attributes.get("expires")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool) or expires <= 0:
        return ["exportable key must carry an expiry (attributes.expires)"]
    return []


def _looks_secret(value: str) -> bool:
    return any(p.search(value) for p in SECRET_VALUE_PATTERNS)


def no_secret_env(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No env var has a secret-looking name or value, and no `secureValue` is used at all."""
    if resource_type != CONTAINER_GROUP:
        return []
    violations = []
    for container in _containers(props):
        cname = container.get("name", "?")
        for env in _props_of(container).get("environmentVariables") or []:
            name = str(env.get("name", ""))
            if any(marker in name.upper() for marker in SECRET_NAME_MARKERS):
                violations.append(f"container {cname}: env var {name} has a secret-looking name")
            if env.get("secureValue") is not None:
                # A secureValue is still a plaintext secret in the deployment and the state.
                violations.append(f"container {cname}: env var {name} uses secureValue; seal it in Key Vault")
            if _looks_secret(str(env.get("value") or "")):
                violations.append(f"container {cname}: env var {name} has a secret-looking value")
    return violations


def images_by_digest(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """Every container image is referenced by digest, never by a mutable tag."""
    if resource_type != CONTAINER_GROUP:
        return []
    return [f"container {c.get('name', '?')}: image must be referenced by @sha256 digest"
            for c in _containers(props) if not _DIGEST_REF.search(str(_props_of(c).get("image") or ""))]


def _sidecar_ports(container: Mapping[str, Any]) -> set[int]:
    spec = _props_of(container)
    ports = {int(p.get("port")) for p in spec.get("ports") or []}
    for env in spec.get("environmentVariables") or []:
        if env.get("name") == "Port" and str(env.get("value", "")).isdigit():
            ports.add(int(env["value"]))
    # skr listens on 8080 unless told otherwise.
    return ports or {8080}


def sidecar_port_private(resource_type: str, props: Mapping[str, Any]) -> list[str]:
    """No port the SKR sidecar listens on is in the group's public IP ports."""
    if resource_type != CONTAINER_GROUP:
        return []
    public = {int(p.get("port")) for p in (props.get("ipAddress") or {}).get("ports") or []}
    violations = []
    for container in _containers(props):
        if str(_props_of(container).get("image", "")).startswith(SKR_IMAGE_PREFIX):
            for port in sorted(_sidecar_ports(container) & public):
                violations.append(f"SKR sidecar port {port} must not be public")
    return violations


RULES: dict[str, tuple[str, Rule]] = {
    "aci-confidential-with-cce-policy": ("Every ACI group is Confidential and has a CCE policy.", confidential_group),
    "key-vault-premium-rbac-purge-protection": ("Key Vaults are Premium with purge protection and RBAC.", premium_vault),
    "exportable-key-pins-hostdata": (
        "Every exportable key's release policy pins hostdata and is-debuggable == false.", exportable_key_release),
    "no-secrets-in-container-env": (
        "No container env var has a secret-looking name or value, and no secureValue is used.", no_secret_env),
    "skr-key-retained-on-delete": ("Exportable keys are retained on delete, never deleted.", retained_release_key),
    "skr-key-expires": ("Exportable keys carry an expiry.", expiring_release_key),
    "images-by-digest": ("Container images are referenced by digest.", images_by_digest),
    "skr-sidecar-port-private": ("The SKR sidecar port is not public.", sidecar_port_private),
}
