"""The Pulumi program: read config, wire the components, export what the agent and the operator need."""

import pulumi
from pulumi_azure_native import authorization, resources

from components.audit_storage import AuditStorage, AuditStorageArgs
from components.cce_policy import CcePolicy, CcePolicyArgs
from components.config import load_config
from components.containers import AppEnv, GroupSpec, app_container, skr_sidecar
from components.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.image import AppImage, AppImageArgs
from components.key_release import KeyRelease, KeyReleaseArgs
from components.resource_server import ResourceServerIdentity, ResourceServerIdentityArgs
from components.sealing import SealedSecrets, SealedSecretsArgs
from components.server import ConfidentialServer, ConfidentialServerArgs

cfg = load_config()
client = authorization.get_client_config_output()
# The group exists already: the deployer's roles are scoped to it (docs/deploy.md), so reading it
# at preview also proves the scope is right before anything is created.
group = resources.get_resource_group_output(resource_group_name=cfg.resource_group_name)

image = AppImage("app", AppImageArgs(
    resource_group_name=group.name, location=cfg.location, registry_name=cfg.registry_name,
    repository=cfg.image_repository, base_image=cfg.base_image,
    source_date_epoch=cfg.source_date_epoch,
    context=cfg.image_context, dockerfile=cfg.dockerfile, builder=cfg.image_builder))

auth = ResourceServerIdentity("mcp-auth", ResourceServerIdentityArgs(
    display_name=f"mcp-tee-{cfg.stack}", tenant_id=client.tenant_id, audience=cfg.auth_audience))
audit = AuditStorage("audit", AuditStorageArgs(
    resource_group_name=group.name, location=cfg.location, account_name=cfg.audit_storage_account,
    container_name=cfg.audit_container))

app_env = AppEnv(
    maa_endpoint=cfg.maa_endpoint, akv_endpoint=cfg.vault_host, auth_issuer=auth.issuer,
    auth_jwks_url=auth.jwks_url, auth_audience=auth.audience, audit_blob_account_url=audit.account_url,
    audit_blob_container=audit.container_name, audit_log=cfg.audit_log)
spec = GroupSpec(containers=(
    app_container(image.image_ref, app_env, cpu=cfg.cpu, memory_gb=cfg.memory_gb, command=cfg.app_command),
    skr_sidecar(cfg.skr_image),
))
cce = CcePolicy("cce", CcePolicyArgs(group=spec, confcom_version=cfg.confcom_version,
                                     confcom_flags=cfg.confcom_flags, policy_file=cfg.cce_policy_file,
                                     registry_name=image.registry_name))

keys = KeyRelease("skr", KeyReleaseArgs(
    resource_group_name=group.name, location=cfg.location, vault_name=cfg.vault_name,
    tenant_id=client.tenant_id, maa_endpoint=cfg.maa_endpoint, hostdata=cce.hostdata,
    expiry_days=cfg.key_expiry_days, rotation=cfg.key_rotation))

sealed = SealedSecrets("seal", SealedSecretsArgs(
    subscription_id=client.subscription_id, deployer_object_id=client.object_id, vault_id=keys.vault_id,
    vault_url=keys.vault_url, key_id=keys.key_id, key_name=keys.key_name, key_version_uri=keys.key_version_uri,
    secrets=cfg.baseline_secrets))

identity = WorkloadIdentity("workload", WorkloadIdentityArgs(
    resource_group_name=group.name, location=cfg.location, subscription_id=client.subscription_id,
    key_id=keys.key_id, vault_id=keys.vault_id, registry_id=image.registry_id,
    audit_container_id=audit.container_id))

server = ConfidentialServer("mcp", ConfidentialServerArgs(
    resource_group_name=group.name, location=cfg.location,
    group=spec.bind({"SKR_KEY_NAME": keys.key_name, "IDENTITY_CLIENT_ID": identity.client_id}),
    cce_policy=cce.policy, identity_id=identity.identity_id, registry_login_server=image.login_server,
    dns_label_prefix=cfg.dns_label_prefix, replicas=cfg.replicas, restart_policy=cfg.restart_policy,
    depends_on=[*identity.role_assignments, *sealed.steps]))

pulumi.export("mcp_url", server.mcp_urls.apply(lambda urls: urls[0]))
pulumi.export("mcp_urls", server.mcp_urls)
pulumi.export("group_names", server.group_names)
pulumi.export("resource_group_name", group.name)
pulumi.export("expected_hostdata", cce.hostdata)
pulumi.export("maa_endpoint", cfg.maa_endpoint)
pulumi.export("confcom_version", cfg.confcom_version)
pulumi.export("confcom_flags", list(cfg.confcom_flags))
pulumi.export("stdio_disabled", cfg.stdio_disabled)
pulumi.export("key_id", keys.key_uri)
pulumi.export("key_name", keys.key_name)
pulumi.export("key_expiry_days", cfg.key_expiry_days)
pulumi.export("vault_url", keys.vault_url)
pulumi.export("image_ref", image.image_ref)
pulumi.export("cce_template", cce.template)
pulumi.export("auth_issuer", auth.issuer)
pulumi.export("auth_audience", auth.audience)
pulumi.export("auth_client_id", auth.client_id)
pulumi.export("auth_token_scopes", auth.token_scopes)
pulumi.export("audit_blob_account_url", audit.account_url)
pulumi.export("audit_blob_container", audit.container_name)
