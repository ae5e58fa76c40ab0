"""The audit sink's storage: hardened account, private container, least-privilege role, pinned app env."""

from __future__ import annotations

from components.identity import BLOB_CONTRIBUTOR_ROLE
from tests.components.harness import ProgramRun, app_env

GROUP = "azure-native:containerinstance:ContainerGroup"


class TestAuditStorage:
    def test_account_takes_entra_tokens_only_over_tls(self, stack_run: ProgramRun) -> None:
        account = stack_run.one("azure-native:storage:StorageAccount").inputs
        assert account["allowSharedKeyAccess"] is False, "no account key, so no connection string to leak"
        assert account["allowBlobPublicAccess"] is False
        assert account["enableHttpsTrafficOnly"] is True and account["minimumTlsVersion"] == "TLS1_2"

    def test_container_is_private(self, stack_run: ProgramRun) -> None:
        assert stack_run.one("azure-native:storage:BlobContainer").inputs["publicAccess"] == "None"

    def test_workload_identity_may_write_only_this_container(self, stack_run: ProgramRun) -> None:
        container = stack_run.one("azure-native:storage:BlobContainer")
        grants = [r for r in stack_run.of_type("azure-native:authorization:RoleAssignment")
                  if r.inputs["roleDefinitionId"].endswith(BLOB_CONTRIBUTOR_ROLE)]
        assert [g.inputs["scope"] for g in grants] == [container.resource_id]
        assert "/containers/" in container.resource_id, "scoped to the container, not the account"

    def test_app_env_names_the_blob_sink(self, stack_run: ProgramRun) -> None:
        account = stack_run.one("azure-native:storage:StorageAccount").inputs["accountName"]
        for group in stack_run.of_type(GROUP):
            env = app_env(group)
            assert env["MCP_AUDIT_SINK"] == "blob"
            assert env["MCP_AUDIT_BLOB_ACCOUNT_URL"] == f"https://{account}.blob.core.windows.net"
            assert env["MCP_AUDIT_BLOB_CONTAINER"] == stack_run.stack_outputs["audit_blob_container"] == "audit"
