"""confcom is pinned: the exact extension version and flags generate the policy, and prod disables stdio.

The script is run for real, with a stand-in `az` on PATH that records its calls, because the
version check is shell logic that no mock would exercise.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from components.cce_policy import CONFCOM_SCRIPT
from tests.components.harness import ProgramRun, run_program

POLICY = base64.b64encode(b"package policy\n").decode()
# `az` as far as the script uses it: extension show/remove/add and confcom acipolicygen.
FAKE_AZ = """#!/bin/sh
echo "$*" >> "$AZ_LOG"
case "$1 $2" in
  "extension show") [ -f "$AZ_STATE" ] && cat "$AZ_STATE" || exit 1 ;;
  "extension remove") rm -f "$AZ_STATE" ;;
  "extension add") echo "${AZ_INSTALLS:-$6}" > "$AZ_STATE"; echo "installed" ;;
  "confcom acipolicygen") echo "WARNING: stdio" >&2; echo "%s" ;;
  "acr login") [ -z "$AZ_LOGIN_FAILS" ] || { echo "login failed" >&2; exit 1; } ;;
esac
""" % POLICY


def _confcom(run: ProgramRun):
    (command,) = [c for c in run.of_type("command:local:Command") if c.name.endswith("-confcom")]
    return command


def _rego(run: ProgramRun) -> str:
    policy = run.of_type("azure-native:containerinstance:ContainerGroup")[0].inputs[
        "confidentialComputeProperties"]["ccePolicy"]
    return base64.b64decode(policy).decode()


class TestRegistryLogin:
    def test_confcom_logs_in_to_the_stacks_registry(self, dev_run: ProgramRun) -> None:
        registry = dev_run.one("azure-native:containerregistry:Registry")
        assert _confcom(dev_run).inputs["environment"]["REGISTRY"] == registry.outputs.get("name", registry.name)

    def test_the_docker_push_waits_for_a_login_that_reruns_with_every_build(self, dev_run: ProgramRun) -> None:
        (login,) = [c for c in dev_run.of_type("command:local:Command") if c.name.endswith("-registry-login")]
        (build,) = dev_run.of_type("docker-build:index:Image")
        assert login.urn in dev_run.options[("docker-build:index:Image", build.name)]["dependencies"]
        tag = build.inputs["tags"][0].rsplit(":", 1)[1]
        assert login.inputs["triggers"] == [tag]


class TestPinnedInTheProgram:
    def test_version_and_flags_reach_the_command_and_its_triggers(self, stack_run: ProgramRun) -> None:
        command = _confcom(stack_run)
        env = command.inputs["environment"]
        assert env["CONFCOM_VERSION"] == stack_run.stack_outputs["confcom_version"] == "1.4.3"
        assert env["CONFCOM_FLAGS"] == " ".join(stack_run.stack_outputs["confcom_flags"])
        assert command.inputs["triggers"][1:] == [env["CONFCOM_VERSION"], env["CONFCOM_FLAGS"]]

    def test_prod_disables_stdio_and_dev_keeps_it(self, dev_run: ProgramRun, prod_run: ProgramRun) -> None:
        assert _confcom(prod_run).inputs["environment"]["CONFCOM_FLAGS"] == "--disable-stdio"
        assert prod_run.stack_outputs["stdio_disabled"] is True
        assert '"allow_stdio_access": false' in _rego(prod_run)
        assert _confcom(dev_run).inputs["environment"]["CONFCOM_FLAGS"] == ""
        assert dev_run.stack_outputs["stdio_disabled"] is False
        assert '"allow_stdio_access": true' in _rego(dev_run)

    def test_flags_change_the_hostdata(self, dev_run: ProgramRun) -> None:
        strict = run_program("dev", overrides={"mcp-tee:confcomFlags": '["--disable-stdio"]'})
        assert strict.stack_outputs["expected_hostdata"] != dev_run.stack_outputs["expected_hostdata"]


class TestConfcomScript:
    @pytest.fixture
    def az(self, tmp_path: Path) -> dict[str, str]:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "az").write_text(FAKE_AZ)
        (bin_dir / "az").chmod(0o755)
        return {"PATH": f"{bin_dir}:/usr/bin:/bin", "AZ_LOG": str(tmp_path / "az.log"),
                "AZ_STATE": str(tmp_path / "installed"), "CONFCOM_VERSION": "1.4.3",
                "CONFCOM_FLAGS": "--disable-stdio"}

    def _run(self, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", CONFCOM_SCRIPT], input=json.dumps({"resources": []}), env=env,
                              capture_output=True, text=True, timeout=30)

    def _calls(self, env: dict[str, str]) -> list[str]:
        return Path(env["AZ_LOG"]).read_text().splitlines()

    def test_installs_the_pinned_version_and_passes_the_flags(self, az: dict[str, str]) -> None:
        result = self._run(az)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == POLICY, "only the policy may reach stdout"
        calls = self._calls(az)
        assert "extension add --name confcom --version 1.4.3 --yes" in calls
        (generate,) = [c for c in calls if c.startswith("confcom acipolicygen")]
        assert generate.endswith("--print-policy --approve-wildcards --disable-stdio")

    def test_replaces_another_installed_version(self, az: dict[str, str]) -> None:
        Path(az["AZ_STATE"]).write_text("1.2.7\n")
        assert self._run(az).returncode == 0
        calls = self._calls(az)
        assert calls.index("extension remove --name confcom") < calls.index(
            "extension add --name confcom --version 1.4.3 --yes")

    def test_keeps_the_pinned_version_when_it_is_installed(self, az: dict[str, str]) -> None:
        Path(az["AZ_STATE"]).write_text("1.4.3\n")
        assert self._run(az).returncode == 0
        assert not [c for c in self._calls(az) if c.startswith("extension add")]

    def test_logs_in_to_the_private_registry_before_it_pulls(self, az: dict[str, str]) -> None:
        """Issue 12 item 5: confcom pulls the digest-pinned private image, so it must be logged in first."""
        assert self._run({**az, "REGISTRY": "mcpteeacr"}).returncode == 0
        calls = self._calls(az)
        login = calls.index("acr login --name mcpteeacr")
        assert login < [i for i, c in enumerate(calls) if c.startswith("confcom acipolicygen")][0]

    def test_a_failed_login_stops_before_any_policy(self, az: dict[str, str]) -> None:
        result = self._run({**az, "REGISTRY": "mcpteeacr", "AZ_LOGIN_FAILS": "1"})
        assert result.returncode != 0 and result.stdout.strip() == ""
        assert not [c for c in self._calls(az) if c.startswith("confcom")]

    def test_refuses_when_the_pinned_version_does_not_install(self, az: dict[str, str]) -> None:
        result = self._run({**az, "AZ_INSTALLS": "1.5.0"})
        assert result.returncode != 0
        assert "1.4.3 is pinned but 1.5.0 is installed" in result.stderr
        assert not [c for c in self._calls(az) if c.startswith("confcom")], "no policy from an unpinned confcom"
