"""The CI workflows' structure (actionlint cannot be installed here, so this checks what matters)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.infra.harness import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    # PyYAML reads the bare key `on` as the boolean True.
    data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


SECRET_MARKERS = ("client-secret", "client_secret", "creds:")


def _stored_secret_markers(text: str) -> list[str]:
    return [marker for marker in SECRET_MARKERS if marker in text.lower()]


def _pulumi_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in _steps(workflow) if str(s.get("uses", "")).startswith("pulumi/actions@")]


class TestWellFormed:
    @pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
    def test_every_job_has_a_runner_and_steps_that_run_or_use(self, name: str) -> None:
        workflow = _load(name)
        assert workflow["jobs"]
        for job_name, job in workflow["jobs"].items():
            assert job.get("runs-on"), f"{name}:{job_name} needs runs-on"
            for step in job["steps"]:
                assert ("run" in step) != ("uses" in step), f"{name}:{job_name}: a step runs or uses, not both"
            for need in [job.get("needs")] if isinstance(job.get("needs"), str) else job.get("needs") or []:
                assert need in workflow["jobs"], f"{name}:{job_name} needs unknown job {need}"


class TestAzureLoginIsOidc:
    @pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
    def test_id_token_permission_and_no_client_secret(self, name: str) -> None:
        workflow = _load(name)
        assert workflow["permissions"]["id-token"] == "write"
        assert _stored_secret_markers((WORKFLOWS / name).read_text()) == []
        logins = [s for s in _steps(workflow) if str(s.get("uses", "")).startswith("azure/login@")]
        assert logins and all(set(s["with"]) == {"client-id", "tenant-id", "subscription-id"} for s in logins)

    def test_the_check_catches_a_stored_secret(self) -> None:
        text = (WORKFLOWS / "deploy.yml").read_text().replace(
            "subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}",
            "subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}\n          client-secret: ${{ secrets.X }}", 1)
        assert _stored_secret_markers(text) == ["client-secret"]


class TestPreview:
    def test_runs_on_pull_requests_tests_first_and_previews_each_stack_with_a_comment(self) -> None:
        workflow = _load("preview.yml")
        assert "pull_request" in workflow["on"]
        assert any(s.get("run") == "make test" for s in workflow["jobs"]["test"]["steps"])
        assert workflow["jobs"]["preview"]["needs"] == "test"
        assert workflow["jobs"]["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
        (step,) = _pulumi_steps(workflow)
        assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True
        assert step["with"]["policyPacks"] == "policy/pack"

    def test_confcom_extension_is_installed(self) -> None:
        assert any("az extension add --name confcom" in s.get("run", "") for s in _steps(_load("preview.yml")))


class TestDeploy:
    def test_runs_on_main_and_tests_before_deploying(self) -> None:
        workflow = _load("deploy.yml")
        assert workflow["on"]["push"]["branches"] == ["main"]
        assert any(s.get("run") == "make test" for s in workflow["jobs"]["test"]["steps"])
        assert workflow["jobs"]["deploy-dev"]["needs"] == "test"

    def test_dev_is_automatic_and_prod_waits_for_environment_approval(self) -> None:
        jobs = _load("deploy.yml")["jobs"]
        assert jobs["deploy-dev"]["env"]["STACK"] == "dev"
        assert jobs["deploy-prod"]["environment"] == "prod" and jobs["deploy-prod"]["env"]["STACK"] == "prod"
        assert jobs["deploy-prod"]["needs"] == "deploy-dev"
        for job in ("deploy-dev", "deploy-prod"):
            (step,) = [s for s in jobs[job]["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
            assert step["with"]["command"] == "up" and step["with"]["stack-name"] == "${{ env.STACK }}"
            assert any("az extension add --name confcom" in s.get("run", "") for s in jobs[job]["steps"])
