"""Stack config: both stacks build from their YAML, unsafe settings are refused, no secret leaks anywhere."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from components.cce_policy import CcePolicyError
from components.config import ConfigError
from tests.components.conftest import BASELINE_CANARIES, CANARY
from tests.components.harness import TEST_SECRETS, ProgramRun, rego_policy_for, run_program, stack_config

SECRET_SIG = "4dabf18193072939515e22adb298388d"

GROUP = "azure-native:containerinstance:ContainerGroup"


def _is_seal_step(record) -> bool:
    return record.typ == "command:local:Command" and record.name.startswith("seal-")


def _everything(run: ProgramRun, *, except_seal_stdin: bool = False) -> str:
    blobs = []
    for r in run.resources:
        inputs = {k: v for k, v in r.inputs.items() if not (except_seal_stdin and _is_seal_step(r) and k == "stdin")}
        outputs = {k: v for k, v in r.outputs.items() if not (except_seal_stdin and _is_seal_step(r) and k == "stdin")}
        blobs.append({"typ": r.typ, "name": r.name, "inputs": inputs, "outputs": outputs})
    return json.dumps([blobs, run.component_outputs, run.stack_outputs, run.confcom_stdin], default=str)


class TestStacksBuildFromTheirYaml:
    @pytest.mark.parametrize("stack", ["dev", "prod"])
    def test_yaml_holds_no_secret_and_no_secure_value(self, stack: str) -> None:
        config = stack_config(stack)
        assert "azure-native:location" in config and "mcp-tee:maaEndpoint" in config
        assert not any("secure" in value for value in config.values())

    def test_both_stacks_produce_groups_and_outputs(self, dev_run: ProgramRun, prod_run: ProgramRun) -> None:
        assert dev_run.stack_outputs["mcp_url"] == "https://mcp-tee-dev-0.westeurope.azurecontainer.io/mcp"
        assert prod_run.stack_outputs["mcp_url"] == "https://mcp-tee-prod-0.northeurope.azurecontainer.io/mcp"
        assert dev_run.stack_outputs["expected_hostdata"] != prod_run.stack_outputs["expected_hostdata"]


class TestNoSecretLeaks:
    def test_canaries_reach_only_the_seal_steps_stdin(self, dev_run: ProgramRun) -> None:
        assert CANARY not in _everything(dev_run, except_seal_stdin=True)

    def test_each_baseline_secret_goes_to_its_seal_step_as_a_pulumi_secret(self, dev_run: ProgramRun) -> None:
        steps = {r.inputs["environment"]["SECRET_NAME"]: r for r in dev_run.resources if _is_seal_step(r)}
        by_key = {"githubToken": "github-token", "dbConnectionString": "db-connection-string",
                  "webhookUrl": "webhook-url"}
        for key, secret_name in by_key.items():
            step = steps[secret_name]
            stdin, triggers = step.inputs["stdin"], step.inputs["triggers"]
            assert SECRET_SIG in stdin, f"{step.name}: stdin must be registered as a secret"
            assert stdin["value"] == BASELINE_CANARIES[f"mcp-tee:{key}"]
            # One secret element makes the whole trigger list secret: the hash never shows in a diff.
            assert SECRET_SIG in triggers, f"{step.name}: the value hash must stay secret"
            assert triggers["value"][1] == hashlib.sha256(stdin["value"].encode()).hexdigest()

    def test_canary_detector_sees_a_leak(self) -> None:
        # Prove the scan can fail: the same canary put into a pinned setting does show up.
        run = run_program("dev", overrides={"mcp-tee:mcpAuthAudience": f"https://{CANARY}.example"})
        assert CANARY in _everything(run)


class TestFailClosed:
    @pytest.mark.parametrize("key", ["GITHUB_TOKEN", "DB_CONNECTION_STRING", "WEBHOOK_URL"])
    def test_secret_under_an_env_var_spelling_is_refused_without_echoing_it(self, key: str) -> None:
        with pytest.raises(ConfigError) as refused:
            run_program("dev", overrides={f"mcp-tee:{key}": CANARY}, secret_keys=(f"mcp-tee:{key}",))
        assert key in str(refused.value) and CANARY not in str(refused.value)

    @pytest.mark.parametrize("key", ["githubToken", "dbConnectionString", "webhookUrl"])
    def test_baseline_secret_in_plaintext_config_is_refused_without_echoing_it(self, key: str,
                                                                              monkeypatch) -> None:
        # The same value, but not marked secret: it would sit in Pulumi.<stack>.yaml in clear.
        monkeypatch.delitem(TEST_SECRETS, f"mcp-tee:{key}")
        with pytest.raises(ConfigError, match="must be a secret") as refused:
            run_program("dev", overrides={f"mcp-tee:{key}": CANARY})
        assert key in str(refused.value) and CANARY not in str(refused.value)

    @pytest.mark.parametrize("key", ["githubToken", "dbConnectionString", "webhookUrl"])
    def test_missing_baseline_secret_fails_at_preview(self, key: str, monkeypatch) -> None:
        monkeypatch.delitem(TEST_SECRETS, f"mcp-tee:{key}")
        with pytest.raises(ConfigError, match=f"{key}: is required"):
            run_program("dev")

    @pytest.mark.parametrize("key", ["mcpAuthIssuer", "mcpAuthJwksUrl"])
    def test_hand_typed_issuer_settings_are_refused(self, key: str) -> None:
        with pytest.raises(ConfigError, match="derived from the Entra application"):
            run_program("dev", overrides={f"mcp-tee:{key}": "https://login.example.com/"})

    def test_missing_skr_digest_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="skrImage"):
            run_program("dev", with_skr_image=False)

    @pytest.mark.parametrize("image", ["python:3.11-slim-bookworm", "python@sha256:abc"])
    def test_base_image_not_pinned_by_digest_is_refused(self, image: str) -> None:
        with pytest.raises(ConfigError, match="baseImage"):
            run_program("dev", overrides={"mcp-tee:baseImage": image})

    @pytest.mark.parametrize("image", ["mcr.microsoft.com/aci/skr:2.14", "example.com/skr@sha256:" + "a" * 64])
    def test_skr_image_by_tag_or_from_elsewhere_is_refused(self, image: str) -> None:
        with pytest.raises(ConfigError, match="skrImage"):
            run_program("dev", overrides={"mcp-tee:skrImage": image})

    @pytest.mark.parametrize("key, value", [
        ("mcp-tee:replicas", "0"), ("mcp-tee:imageBuilder", "kaniko"), ("mcp-tee:restartPolicy", "Sometimes"),
        ("mcp-tee:maaEndpoint", "https://maa.example/path"), ("mcp-tee:mcpAuthAudience", "http://insecure/mcp"),
        ("mcp-tee:confcomVersion", "latest"), ("mcp-tee:confcomFlags", '["--debug-mode"]'),
        ("mcp-tee:confcomFlags", '"--disable-stdio"'), ("mcp-tee:keyExpiryDays", "0"),
        ("mcp-tee:keyExpiryDays", "9999"), ("mcp-tee:sourceDateEpoch", "yesterday"),
        ("mcp-tee:auditStorageAccount", "Not_Valid"), ("mcp-tee:keyRotation", "a b"),
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
