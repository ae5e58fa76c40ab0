"""The CI workflows: who gets which token, what runs in which order, and zizmor finds nothing.

Threat model: a pushed branch must not be able to mint deploy credentials, a tag moved upstream
must not change what runs, and a `${{ … }}` expansion must never become shell code. actionlint
cannot be installed here; zizmor (offline) and these structural checks cover what matters.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
WORKFLOW_NAMES = ("preview.yml", "deploy.yml")
DEPLOY_JOBS = ("deploy-dev", "deploy-prod")
TEST_JOBS = (("preview.yml", "test"), ("deploy.yml", "test"))

SECRET_MARKERS = ("client-secret", "client_secret", "creds:")
# Each `uses:` is `owner/repo@<full commit sha> # vX.Y.Z`: the comment says which release it is.
PINNED_USES = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # v\d+\.\d+\.\d+$")
# Shell idioms that turn a failed command into a passing step.
FAILURE_HIDERS = ("|| echo", "|| true", "|| :", "set +e")
# The inputs pulumi/actions v7.0.0 declares that these workflows use (its action.yml). An unknown
# key is silently ignored by the runner, as `configMap` once was.
PULUMI_ACTION_INPUTS = frozenset({"command", "stack-name", "pulumi-version", "comment-on-pr", "cloud-url",
                                  "policyPacks", "config-map"})


def _load(name: str, text: str | None = None) -> dict[str, Any]:
    data = yaml.safe_load(text if text is not None else (WORKFLOWS / name).read_text())
    # PyYAML reads the bare key `on` as the boolean True.
    data["on"] = data.pop(True)
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).startswith(f"{action}@")


def _stored_secret_markers(text: str) -> list[str]:
    return [marker for marker in SECRET_MARKERS if marker in text.lower()]


def _expressions_in_run(workflow: dict[str, Any]) -> list[str]:
    """`run:` scripts that expand `${{ … }}` themselves instead of reading it from `env:`."""
    return [step["run"] for step in _steps(workflow) if "${{" in step.get("run", "")]


def _unpinned_uses(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if re.match(r"^\s*(?:- )?uses:", line) and not PINNED_USES.match(line)]


def _test_job_leaks(job: dict[str, Any]) -> list[str]:
    """What a `make test` job could hand to the code under test beyond a read-only checkout."""
    text = yaml.safe_dump(job)
    leaks = [f"permissions {job.get('permissions')}"] if job.get("permissions") != {"contents": "read"} else []
    leaks += [f"environment {job['environment']}"] if "environment" in job else []
    return leaks + [marker for marker in ("secrets.", "vars.", "azure/login") if marker in text]


def _pyproject_pin(name: str) -> str:
    for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["infra"]:
        if requirement.startswith(f"{name}=="):
            return requirement.split("==", 1)[1]
    raise AssertionError(f"pyproject.toml pins no {name}")


class TestWellFormed:
    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_every_job_has_a_runner_and_steps_that_run_or_use(self, name: str) -> None:
        workflow = _load(name)
        assert workflow["jobs"]
        for job_name, job in workflow["jobs"].items():
            assert job.get("runs-on"), f"{name}:{job_name} needs runs-on"
            for step in job["steps"]:
                assert ("run" in step) != ("uses" in step), f"{name}:{job_name}: a step runs or uses, not both"
            for need in [job.get("needs")] if isinstance(job.get("needs"), str) else job.get("needs") or []:
                assert need in workflow["jobs"], f"{name}:{job_name} needs unknown job {need}"

    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_run_steps_use_bash_with_errexit_and_pipefail(self, name: str) -> None:
        # GitHub runs `shell: bash` as `bash -eo pipefail`; the implicit default has no pipefail.
        assert _load(name)["defaults"]["run"]["shell"] == "bash"

    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_no_step_hides_a_failure(self, name: str) -> None:
        workflow = _load(name)
        for step in _steps(workflow):
            assert not any(hider in step.get("run", "") for hider in FAILURE_HIDERS), step
            assert "continue-on-error" not in step, step
        for job in workflow["jobs"].values():
            assert "continue-on-error" not in job


class TestPinnedActions:
    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_every_action_is_pinned_by_commit_with_its_version(self, name: str) -> None:
        assert _unpinned_uses((WORKFLOWS / name).read_text()) == []

    def test_the_check_catches_a_tag_and_a_missing_version_comment(self) -> None:
        text = "      - uses: actions/checkout@v7\n      - uses: actions/setup-python@" + "a" * 40 + "\n"
        assert _unpinned_uses(text) == ["- uses: actions/checkout@v7", "- uses: actions/setup-python@" + "a" * 40]

    def test_each_action_has_one_pin_across_workflows(self) -> None:
        pins: dict[str, set[str]] = {}
        for name in WORKFLOW_NAMES:
            for line in (WORKFLOWS / name).read_text().splitlines():
                if match := PINNED_USES.match(line):
                    pins.setdefault(match.group(1), set()).add(line.split("@", 1)[1])
        assert {action for action, refs in pins.items() if len(refs) > 1} == set()
        assert {"actions/checkout", "actions/setup-python", "azure/login", "pulumi/actions"} <= set(pins)

    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_checkout_never_persists_the_token(self, name: str) -> None:
        checkouts = [s for s in _steps(_load(name)) if _uses(s, "actions/checkout")]
        assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)


class TestExpressionsReachShellOnlyThroughEnv:
    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_no_run_script_expands_an_expression(self, name: str) -> None:
        assert _expressions_in_run(_load(name)) == []

    def test_the_check_catches_an_expanded_variable(self) -> None:
        text = (WORKFLOWS / "deploy.yml").read_text().replace(
            "run: docker version",
            'run: az acr login --name "${{ vars.ACR_NAME }}"', 1)
        # The steps are shared by deploy-dev and deploy-prod (a YAML anchor), so it shows up in both.
        assert _expressions_in_run(_load("deploy.yml", text)) == ['az acr login --name "${{ vars.ACR_NAME }}"'] * 2


class TestPermissions:
    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_nothing_by_default_and_each_job_asks_for_its_own(self, name: str) -> None:
        workflow = _load(name)
        assert workflow["permissions"] == {}
        assert all("permissions" in job for job in workflow["jobs"].values())

    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_id_token_only_where_azure_login_runs(self, name: str) -> None:
        for job_name, job in _load(name)["jobs"].items():
            logs_in = any(_uses(s, "azure/login") for s in job["steps"])
            assert (job["permissions"].get("id-token") == "write") == logs_in, f"{name}:{job_name}"

    @pytest.mark.parametrize(("name", "job_name"), TEST_JOBS)
    def test_make_test_gets_no_token_no_secret_no_variable(self, name: str, job_name: str) -> None:
        job = _load(name)["jobs"][job_name]
        assert any(s.get("run") == "make test" for s in job["steps"])
        assert _test_job_leaks(job) == []

    def test_the_check_catches_an_id_token_an_environment_and_a_secret(self) -> None:
        job = _load("preview.yml")["jobs"]["test"]
        job["permissions"]["id-token"] = "write"
        job["environment"] = "preview"
        job["steps"][-1]["env"] = {"PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"}
        assert _test_job_leaks(job) == ["permissions {'contents': 'read', 'id-token': 'write'}",
                                        "environment preview", "secrets."]


class TestAzureLoginIsOidc:
    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_no_client_secret_and_only_federated_ids(self, name: str) -> None:
        assert _stored_secret_markers((WORKFLOWS / name).read_text()) == []
        logins = [s for s in _steps(_load(name)) if _uses(s, "azure/login")]
        assert logins and all(set(s["with"]) == {"client-id", "tenant-id", "subscription-id"} for s in logins)

    def test_the_check_catches_a_stored_secret(self) -> None:
        text = (WORKFLOWS / "deploy.yml").read_text().replace(
            "subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}",
            "subscription-id: ${{ vars.AZURE_SUBSCRIPTION_ID }}\n          client-secret: ${{ secrets.X }}", 1)
        assert _stored_secret_markers(text) == ["client-secret"]


class TestPulumiSteps:
    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_inputs_are_ones_the_action_declares_and_the_cli_matches_the_sdk(self, name: str) -> None:
        steps = [s for s in _steps(_load(name)) if _uses(s, "pulumi/actions")]
        assert steps
        for step in steps:
            assert set(step["with"]) <= PULUMI_ACTION_INPUTS, set(step["with"]) - PULUMI_ACTION_INPUTS
            assert step["with"]["pulumi-version"] == _pyproject_pin("pulumi")
            assert step["with"]["policyPacks"] == "policy/pack"

    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_digest_pinned_images_come_from_the_environment(self, name: str) -> None:
        for step in [s for s in _steps(_load(name)) if _uses(s, "pulumi/actions")]:
            assert yaml.safe_load(step["with"]["config-map"]) == {
                "mcp-tee:skrImage": {"value": "${{ vars.SKR_IMAGE }}"},
                "mcp-tee:baseImage": {"value": "${{ vars.BASE_IMAGE }}"}}

    @pytest.mark.parametrize("name", WORKFLOW_NAMES)
    def test_confcom_is_left_to_the_program(self, name: str) -> None:
        # The stack's confcomVersion is the one pin: the program installs exactly it or refuses.
        assert [s for s in _steps(_load(name)) if "confcom" in s.get("run", "")] == []


class TestPreview:
    def test_runs_on_pull_requests_tests_first_and_previews_each_stack_with_a_comment(self) -> None:
        workflow = _load("preview.yml")
        assert "pull_request" in workflow["on"] and "pull_request_target" not in workflow["on"]
        assert workflow["jobs"]["preview"]["needs"] == "test"
        assert workflow["jobs"]["preview"]["strategy"]["matrix"]["stack"] == ["dev", "prod"]
        (step,) = [s for s in _steps(workflow) if _uses(s, "pulumi/actions")]
        assert step["with"]["command"] == "preview" and step["with"]["comment-on-pr"] is True

    def test_preview_runs_under_the_preview_environment_and_its_identity(self) -> None:
        job = _load("preview.yml")["jobs"]["preview"]
        # The `preview` environment's AZURE_CLIENT_ID is the read-only identity; dev/prod hold the deployer.
        assert job["environment"] == "preview"
        assert job["permissions"] == {"contents": "read", "id-token": "write", "pull-requests": "write"}
        (login,) = [s for s in job["steps"] if _uses(s, "azure/login")]
        assert login["with"]["client-id"] == "${{ vars.AZURE_CLIENT_ID }}"

    def test_forks_skip_the_preview_instead_of_failing(self) -> None:
        job = _load("preview.yml")["jobs"]["preview"]
        assert job["if"] == "github.event.pull_request.head.repo.full_name == github.repository"

    def test_preview_never_deploys(self) -> None:
        commands = {s["with"]["command"] for s in _steps(_load("preview.yml")) if _uses(s, "pulumi/actions")}
        assert commands == {"preview"}


class TestDeploy:
    def test_runs_on_main_and_tests_before_deploying(self) -> None:
        workflow = _load("deploy.yml")
        assert workflow["on"] == {"push": {"branches": ["main"]}}
        assert workflow["jobs"]["deploy-dev"]["needs"] == "test"

    def test_dev_is_automatic_and_prod_waits_for_environment_approval(self) -> None:
        jobs = _load("deploy.yml")["jobs"]
        assert jobs["deploy-dev"]["environment"] == "dev" and jobs["deploy-dev"]["env"]["STACK"] == "dev"
        assert jobs["deploy-prod"]["environment"] == "prod" and jobs["deploy-prod"]["env"]["STACK"] == "prod"
        assert jobs["deploy-prod"]["needs"] == "deploy-dev"
        for job in DEPLOY_JOBS:
            (step,) = [s for s in jobs[job]["steps"] if _uses(s, "pulumi/actions")]
            assert step["with"]["command"] == "up" and step["with"]["stack-name"] == "${{ env.STACK }}"

    @pytest.mark.parametrize("job_name", DEPLOY_JOBS)
    def test_first_deploy_order_gives_pulumi_docker_and_an_az_login(self, job_name: str) -> None:
        steps = _load("deploy.yml")["jobs"][job_name]["steps"]

        def index(found: Any) -> int:
            (position,) = [i for i, step in enumerate(steps) if found(step)]
            return position

        install = index(lambda s: s.get("run") == "make install")
        # The program's local commands (the seal step) run `mcp-tee` from the venv.
        venv_on_path = index(lambda s: s.get("run") == 'echo "$GITHUB_WORKSPACE/.venv/bin" >> "$GITHUB_PATH"')
        docker = index(lambda s: s.get("run") == "docker version")
        login = index(lambda s: _uses(s, "azure/login"))
        up = index(lambda s: _uses(s, "pulumi/actions"))
        assert install < venv_on_path < up and docker < up and login < up
        # The registry does not exist before the first `up`; the program logs in to it once created.
        assert not any("acr login" in s.get("run", "") for s in steps)


class TestZizmor:
    """zizmor audits the workflows offline; any finding fails the suite."""

    ZIZMOR = Path(sys.executable).with_name("zizmor")

    def _audit(self, workflows: Path) -> subprocess.CompletedProcess[str]:
        assert self.ZIZMOR.exists(), "zizmor is in the dev extra: run `make install`"
        return subprocess.run([str(self.ZIZMOR), "--offline", "--persona", "pedantic", "--format", "plain",
                               "--no-progress", str(workflows)],
                              capture_output=True, text=True, timeout=60, cwd=REPO)

    def test_no_findings(self) -> None:
        result = self._audit(WORKFLOWS)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No findings to report" in result.stdout

    def test_it_catches_an_unpinned_action(self, tmp_path: Path) -> None:
        broken = tmp_path / ".github" / "workflows"
        shutil.copytree(WORKFLOWS, broken)
        text = (broken / "deploy.yml").read_text()
        text = text.replace("azure/login@f5d393ae46f8fde4be8b75f32e3fc50e654ad0ca # v3.0.1", "azure/login@v3", 1)
        (broken / "deploy.yml").write_text(text)
        result = self._audit(broken)
        assert result.returncode != 0
        assert "unpinned-uses" in result.stdout
