"""The Pulumi program: read config, wire the five components, export what the agent needs."""

import pulumi
from pulumi_azure_native import authorization, resources

from components.cce_policy import CcePolicy, CcePolicyArgs
from components.config import load_config
from components.containers import AppEnv, GroupSpec, app_container, skr_sidecar
from components.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.image import AppImage, AppImageArgs
from components.key_release import KeyRelease, KeyReleaseArgs, reseal_hint
from components.server import ConfidentialServer, ConfidentialServerArgs

cfg = load_config()
client = authorization.get_client_config_output()
group = resources.ResourceGroup("rg", resource_group_name=cfg.resource_group_name, location=cfg.location)

image = AppImage("app", AppImageArgs(
    resource_group_name=group.name, location=cfg.location, registry_name=cfg.registry_name,
    repository=cfg.image_repository, context=cfg.image_context, dockerfile=cfg.dockerfile,
    builder=cfg.image_builder))

app_env = AppEnv(
    maa_endpoint=cfg.maa_endpoint, akv_endpoint=cfg.vault_host, auth_issuer=cfg.auth_issuer,
    auth_jwks_url=cfg.auth_jwks_url, auth_audience=cfg.auth_audience, audit_log=cfg.audit_log)
spec = GroupSpec(containers=(
    app_container(image.image_ref, app_env, cpu=cfg.cpu, memory_gb=cfg.memory_gb, command=cfg.app_command),
    skr_sidecar(cfg.skr_image),
))
cce = CcePolicy("cce", CcePolicyArgs(group=spec, policy_file=cfg.cce_policy_file))

keys = KeyRelease("skr", KeyReleaseArgs(
    resource_group_name=group.name, location=cfg.location, vault_name=cfg.vault_name,
    tenant_id=client.tenant_id, maa_endpoint=cfg.maa_endpoint, hostdata=cce.hostdata))

identity = WorkloadIdentity("workload", WorkloadIdentityArgs(
    resource_group_name=group.name, location=cfg.location, subscription_id=client.subscription_id,
    key_id=keys.key_id, vault_id=keys.vault_id, registry_id=image.registry_id))

server = ConfidentialServer("mcp", ConfidentialServerArgs(
    resource_group_name=group.name, location=cfg.location,
    group=spec.bind({"SKR_KEY_NAME": keys.key_name, "IDENTITY_CLIENT_ID": identity.client_id}),
    cce_policy=cce.policy, identity_id=identity.identity_id, registry_login_server=image.login_server,
    dns_label_prefix=cfg.dns_label_prefix, replicas=cfg.replicas, restart_policy=cfg.restart_policy,
    depends_on=identity.role_assignments))

pulumi.export("mcp_url", server.mcp_urls.apply(lambda urls: urls[0]))
pulumi.export("mcp_urls", server.mcp_urls)
pulumi.export("expected_hostdata", cce.hostdata)
pulumi.export("maa_endpoint", cfg.maa_endpoint)
pulumi.export("key_id", keys.key_uri)
pulumi.export("key_name", keys.key_name)
pulumi.export("vault_url", keys.vault_url)
pulumi.export("image_ref", image.image_ref)
pulumi.export("cce_template", cce.template)
pulumi.export("reseal_hint", pulumi.Output.all(keys.vault_url, keys.key_name).apply(lambda v: reseal_hint(*v)))
