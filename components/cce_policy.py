"""Generates the CCE policy for the exact container group and derives its SEV-SNP hostdata.

Threat model: hostdata is what Key Vault's release policy pins, so it must be the hash of exactly
the policy the `ContainerGroup` carries, and that policy must describe exactly the containers that
run. The template is rendered from the same `GroupSpec` as the resource (see `containers.py`),
confcom runs on that template (both containers, images by digest, commands, env, ports), and one
function computes ``hostdata = sha256(base64-decode(policy))`` for generated and supplied policies
alike. Anything that is not valid base64 fails the deployment instead of producing a hash.

No cycle: the template wildcards SKR_KEY_NAME and IDENTITY_CLIENT_ID (ARM parameters without a
default become `.*`), and the secrets are read from Key Vault at run time, never from env. So the
policy depends on the image and on config only; the key depends on the policy, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulumi import ComponentResource, Output, ResourceOptions
from pulumi_command import local

from components.containers import GroupSpec, render_arm_template
from policy.release_policy import hostdata_of

# stdin carries the template, so nothing is written into the repo and the template is the trigger.
CONFCOM_SCRIPT = """set -eu
template="$(mktemp)"
trap 'rm -f "$template"' EXIT
cat > "$template"
az confcom acipolicygen -a "$template" --print-policy --approve-wildcards
"""


class CcePolicyError(ValueError):
    """The CCE policy is missing or is not base64."""


def policy_from_output(stdout: str) -> str:
    """Take the base64 policy from confcom's stdout (its last non-empty line) and check it decodes."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise CcePolicyError("confcom printed no policy")
    policy = lines[-1]
    try:
        hostdata_of(policy)
    except ValueError as exc:
        raise CcePolicyError("confcom output is not a base64 CCE policy") from exc
    return policy


def read_policy_file(path: str) -> str:
    """Read a pre-generated base64 policy (from `az confcom acipolicygen --print-policy`)."""
    with open(path, encoding="ascii") as handle:
        return policy_from_output(handle.read())


@dataclass
class CcePolicyArgs:
    """Inputs of :class:`CcePolicy`.

    Attributes:
        group: The group to measure; wildcarded env vars may still be unbound.
        policy_file: A pre-generated base64 policy to use instead of running confcom. It goes
            through the same hash path; ACI refuses to start containers it does not match.
    """

    group: GroupSpec
    policy_file: str | None = None


class CcePolicy(ComponentResource):
    """The CCE policy of one group shape and its hostdata.

    Attributes:
        template: The ARM template given to confcom (canonical JSON).
        policy: The base64 rego policy, as the `ContainerGroup` will carry it.
        hostdata: Lowercase hex sha256 of the decoded policy.
    """

    template: Output[str]
    policy: Output[str]
    hostdata: Output[str]

    def __init__(self, name: str, args: CcePolicyArgs, opts: ResourceOptions | None = None) -> None:
        super().__init__("mcptee:policy:CcePolicy", name, {}, opts)
        child_opts = ResourceOptions(parent=self)
        self.template = render_arm_template(args.group)
        if args.policy_file:
            self.policy = Output.from_input(read_policy_file(args.policy_file))
        else:
            confcom = local.Command(
                f"{name}-confcom",
                create=CONFCOM_SCRIPT,
                stdin=self.template,
                triggers=[self.template],
                opts=child_opts,
            )
            self.policy = confcom.stdout.apply(policy_from_output)
        self.hostdata = self.policy.apply(hostdata_of)
        self.register_outputs({"hostdata": self.hostdata})
