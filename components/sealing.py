"""Seals the baseline secrets to the current release key inside `pulumi up`: no manual step, no plaintext in argv.

Threat model: the secrets come from Pulumi config secrets (encrypted in state) and go to the
vault sealed to the release key's public half, which only the attested group can turn into the
private half. The step runs `mcp-tee seal`, the same command an operator would run, with the value
on stdin (never argv, so never in `/proc/<pid>/cmdline` or a process listing); the shell keeps it
in an unexported variable so a retry does not need it on disk or in env. It is triggered by
(versioned key id, a hash of the value), so a new key re-seals every secret in the same `up`, and
a changed value re-seals that one; the hash is marked secret, so even it stays encrypted in state.

The deployer needs two data-plane rights for this, and the program grants exactly those to the
identity running it: Key Vault Reader on the key (read its public half) and Key Vault Secrets
Officer on the vault (write the sealed secrets). Role assignments take a while to propagate, so
the command retries for a bounded time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import pulumi
from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_command import local

from components.identity import assign_role

KEY_VAULT_READER_ROLE = "21090545-7ca7-4776-b22c-e363652d74d2"  # Key Vault Reader (reads the key's public half)
SECRETS_OFFICER_ROLE = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"  # Key Vault Secrets Officer (writes secrets)
SEAL_ATTEMPTS = 30
SEAL_RETRY_S = 10
# `printf` is a shell builtin, so the value never becomes an argument of any process.
SEAL_SCRIPT = """set -eu
value="$(cat)"
attempt=1
until printf '%s' "$value" | mcp-tee seal --vault "$VAULT_URL" --key "$KEY_NAME" --name "$SECRET_NAME"; do
  if [ "$attempt" -ge "$SEAL_ATTEMPTS" ]; then
    echo "sealing $SECRET_NAME failed $attempt times" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep "$SEAL_RETRY_S"
done
"""


def value_digest(value: str) -> str:
    """The re-seal trigger for one value (kept as a Pulumi secret)."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass
class SealedSecretsArgs:
    """Inputs of :class:`SealedSecrets`.

    Attributes:
        subscription_id: Subscription that holds the role definitions.
        deployer_object_id: Object id of the identity running `pulumi up`.
        vault_id: ARM id of the vault (Secrets Officer scope).
        vault_url: The vault's URL.
        key_id: ARM id of the key (Key Vault Reader scope).
        key_name: The release key's name.
        key_version_uri: The versioned key identifier (re-seal trigger).
        secrets: Key Vault secret name -> its value, a Pulumi secret.
    """

    subscription_id: pulumi.Input[str]
    deployer_object_id: pulumi.Input[str]
    vault_id: pulumi.Input[str]
    vault_url: pulumi.Input[str]
    key_id: pulumi.Input[str]
    key_name: pulumi.Input[str]
    key_version_uri: pulumi.Input[str]
    secrets: Mapping[str, Output[str]]


class SealedSecrets(ComponentResource):
    """The deployer's two data-plane grants and one seal step per baseline secret.

    Attributes:
        steps: The seal commands, so the groups can start after them.
    """

    steps: list[local.Command]

    def __init__(self, name: str, args: SealedSecretsArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:sealing:SealedSecrets", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        grants = [
            assign_role(f"{name}-deployer-{suffix}", principal_id=args.deployer_object_id,
                        subscription_id=args.subscription_id, role_guid=guid, scope=scope, opts=child_opts)
            for suffix, (guid, scope) in {"key-reader": (KEY_VAULT_READER_ROLE, args.key_id),
                                          "secrets-officer": (SECRETS_OFFICER_ROLE, args.vault_id)}.items()
        ]
        self.steps = [
            local.Command(
                f"{name}-{secret_name}",
                create=SEAL_SCRIPT,
                stdin=value,
                environment={"VAULT_URL": args.vault_url, "KEY_NAME": args.key_name, "SECRET_NAME": secret_name,
                             "SEAL_ATTEMPTS": str(SEAL_ATTEMPTS), "SEAL_RETRY_S": str(SEAL_RETRY_S)},
                triggers=[args.key_version_uri, Output.secret(value.apply(value_digest))],
                opts=ResourceOptions(parent=self, depends_on=grants),
            )
            for secret_name, value in sorted(args.secrets.items())
        ]
        self.register_outputs({"sealed": sorted(args.secrets)})
