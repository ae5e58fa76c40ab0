"""Generates the CCE policy for the exact container group and derives its SEV-SNP hostdata.

Threat model: hostdata is what Key Vault's release policy pins, so it must be the hash of exactly
the policy the `ContainerGroup` carries, and that policy must describe exactly the containers that
run. The template is rendered from the same `GroupSpec` as the resource (see `containers.py`),
confcom runs on that template (both containers, images by digest, commands, env, ports), and one
function computes ``hostdata = sha256(base64-decode(policy))`` for generated and supplied policies
alike. Anything that is not valid base64 fails the deployment instead of producing a hash.

The policy, and so the hostdata, changes with the confcom version and with its flags (1.2.7,
1.4.3 and 1.4.3 with `--disable-stdio` give three different hashes for the same template). So both
are stack settings: the command installs exactly the pinned version (or refuses when it cannot),
passes exactly the pinned flags, and both are triggers of the step and stack outputs.

No cycle: the template wildcards SKR_KEY_NAME and IDENTITY_CLIENT_ID (ARM parameters without a
default become `.*`), and the secrets are read from Key Vault at run time, never from env. So the
policy depends on the image and on config only; the key depends on the policy, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass

from pulumi import ComponentResource, Input, Output, ResourceOptions
from pulumi_command import local

from components.containers import GroupSpec, render_arm_template
from policy.release_policy import hostdata_of

# stdin carries the template, so nothing is written into the repo and the template is a trigger.
# The flags come from a validated allow-list (components/config.py), so word splitting is safe.
CONFCOM_SCRIPT = """set -eu
installed() { az extension show --name confcom --query version --output tsv 2>/dev/null || true; }
if [ "$(installed)" != "$CONFCOM_VERSION" ]; then
  az extension remove --name confcom 1>&2 2>/dev/null || true
  az extension add --name confcom --version "$CONFCOM_VERSION" --yes 1>&2
fi
if [ "$(installed)" != "$CONFCOM_VERSION" ]; then
  echo "confcom $CONFCOM_VERSION is pinned but $(installed) is installed" >&2
  exit 1
fi
# The image is private and pinned by digest, so confcom pulls it through Docker: log in first, on
# every run (a CI runner starts with no credentials), after the registry exists.
if [ -n "${REGISTRY:-}" ]; then
  az acr login --name "$REGISTRY" 1>&2
fi
template="$(mktemp)"
trap 'rm -f "$template"' EXIT
cat > "$template"
az confcom acipolicygen -a "$template" --print-policy --approve-wildcards $CONFCOM_FLAGS
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
        confcom_version: The exact confcom extension version.
        confcom_flags: Extra `acipolicygen` flags, already validated.
        registry_name: The private ACR holding the app image; confcom logs in to it before pulling.
        policy_file: A pre-generated base64 policy to use instead of running confcom. It goes
            through the same hash path; ACI refuses to start containers it does not match.
    """

    group: GroupSpec
    confcom_version: str
    confcom_flags: tuple[str, ...] = ()
    policy_file: str | None = None
    registry_name: Input[str] | None = None


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
            flags = " ".join(args.confcom_flags)
            confcom = local.Command(
                f"{name}-confcom",
                create=CONFCOM_SCRIPT,
                stdin=self.template,
                environment={"CONFCOM_VERSION": args.confcom_version, "CONFCOM_FLAGS": flags,
                             **({"REGISTRY": args.registry_name} if args.registry_name is not None else {})},
                triggers=[self.template, args.confcom_version, flags],
                opts=child_opts,
            )
            self.policy = confcom.stdout.apply(policy_from_output)
        self.hostdata = self.policy.apply(hostdata_of)
        self.register_outputs({"hostdata": self.hostdata})
