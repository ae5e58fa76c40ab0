"""Stack config: both stacks build from their YAML, unsafe settings are refused, no secret leaks anywhere."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from components.cce_policy import CcePolicyError
from components.config import ConfigError
from tests.components.conftest import CANARY
from tests.components.harness import ProgramRun, rego_policy_for, run_program, stack_config

GROUP = "azure-native:containerinstance:ContainerGroup"


def _everything(run: ProgramRun) -> str:
    blobs = [{"typ": r.typ, "name": r.name, "inputs": r.inputs, "outputs": r.outputs} for r in run.resources]
    return json.dumps([blobs, run.component_outputs, run.stack_outputs, run.confcom_stdin], default=str)


class TestStacksBuildFromTheirYaml:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_yaml_holds_no_secret_and_no_secure_value(self, stack: str) -> None:
        config = stack_config(stack)
        assert "azure-native:location" in config and "mcp-tee:maaEndpoint" in config
        assert not any("secure" in value for value in config.values())

    def test_both_stacks_produce_groups_and_outputs(self, dev_run: ProgramRun, prod_run: ProgramRun) -> None:
        assert dev_run.stack_outputs["mcp_url"].startswith("http://mcp-tee-dev-0.westeurope.")
        assert prod_run.stack_outputs["mcp_url"].startswith("http://mcp-tee-prod-0.northeurope.")
        assert dev_run.stack_outputs["expected_hostdata"] != prod_run.stack_outputs["expected_hostdata"]


class TestNoSecretLeaks:
    def test_canary_planted_in_env_and_provider_secret_is_nowhere(self, dev_run: ProgramRun) -> None:
        assert CANARY not in _everything(dev_run)

    def test_canary_detector_sees_a_leak(self) -> None:
        # Prove the scan can fail: the same canary put into a pinned setting does show up.
        run = run_program("dev", overrides={"mcp-tee:mcpAuthAudience": f"https://{CANARY}.example"})
        assert CANARY in _everything(run)


class TestFailClosed:
    @pytest.mark.parametrize("key", ["githubToken", "dbConnectionString", "webhookUrl", "GITHUB_TOKEN"])
    def test_baseline_secret_in_config_is_refused_without_echoing_it(self, key: str) -> None:
        with pytest.raises(ConfigError) as refused:
            run_program("dev", overrides={f"mcp-tee:{key}": CANARY}, secret_keys=(f"mcp-tee:{key}",))
        assert key in str(refused.value) and CANARY not in str(refused.value)

    def test_missing_skr_digest_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="skrImage"):
            run_program("dev", with_skr_image=False)

    @pytest.mark.parametrize("image", ["mcr.microsoft.com/aci/skr:2.14", "example.com/skr@sha256:" + "a" * 64])
    def test_skr_image_by_tag_or_from_elsewhere_is_refused(self, image: str) -> None:
        with pytest.raises(ConfigError, match="skrImage"):
            run_program("dev", overrides={"mcp-tee:skrImage": image})

    @pytest.mark.parametrize("key, value", [
        ("mcp-tee:replicas", "0"), ("mcp-tee:imageBuilder", "kaniko"), ("mcp-tee:restartPolicy", "Sometimes"),
        ("mcp-tee:maaEndpoint", "https://maa.example/path"), ("mcp-tee:mcpAuthJwksUrl", "http://insecure/jwks"),
    ])
    def test_out_of_range_settings_are_refused(self, key: str, value: str) -> None:
        with pytest.raises(ConfigError):
            run_program("dev", overrides={key: value})

    def test_policy_file_that_is_not_base64_is_refused(self, tmp_path) -> None:
        bad = tmp_path / "policy.b64"
        bad.write_text("this is not base64!\n")
        with pytest.raises(CcePolicyError):
            run_program("dev", overrides={"mcp-tee:ccePolicyFile": str(bad)})


class TestPreGeneratedPolicy:
    def test_policy_file_goes_through_the_same_hash_path(self, tmp_path, dev_run: ProgramRun) -> None:
        policy = rego_policy_for(dev_run.confcom_stdin[0])
        path = tmp_path / "policy.b64"
        path.write_text(policy + "\n")
        run = run_program("dev", overrides={"mcp-tee:ccePolicyFile": str(path)})
        assert not run.confcom_stdin, "confcom must not run when a policy file is given"
        assert run.one(GROUP).inputs["confidentialComputeProperties"]["ccePolicy"] == policy
        assert run.stack_outputs["expected_hostdata"] == hashlib.sha256(base64.b64decode(policy)).hexdigest()


class TestImageChangeRotatesKey:
    def test_new_sidecar_digest_gives_new_hostdata_and_new_key(self, dev_run: ProgramRun) -> None:
        other = "mcr.microsoft.com/aci/skr:2.15@sha256:" + hashlib.sha256(b"another").hexdigest()
        run = run_program("dev", overrides={"mcp-tee:skrImage": other})
        assert run.stack_outputs["expected_hostdata"] != dev_run.stack_outputs["expected_hostdata"]
        assert run.stack_outputs["key_name"] != dev_run.stack_outputs["key_name"]
        assert run.stack_outputs["key_name"] in run.stack_outputs["reseal_hint"]
