"""The image build's shell commands run for real, with the environment the program gives them.

`az` is a stand-in on PATH that records its calls (the real CLI cannot run here). prod builds with
ACR Tasks: the build's log must go to stderr, so that the command's stdout, which the program reads
as the image digest, is the digest alone; dev builds with Docker after `az acr login`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from components.image import ImageBuildError, _checked_digest
from tests.components.harness import ProgramRun

DIGEST = "sha256:" + "ab" * 32
# `az` as far as the two scripts use it; AZ_BUILD_FAILS and AZ_SHOWS change its answers.
FAKE_AZ = """#!/bin/sh
echo "$*" >> "$AZ_LOG"
case "$1 $2" in
  "acr build") echo "Step 1/9 : FROM base"; [ -z "$AZ_BUILD_FAILS" ] || { echo "build failed" >&2; exit 1; } ;;
  "acr repository") echo "${AZ_SHOWS:-%s}" ;;
  "acr login") echo "Login Succeeded" ;;
esac
""" % DIGEST


def _command(run: ProgramRun, suffix: str):
    (command,) = [c for c in run.of_type("command:local:Command") if c.name.endswith(suffix)]
    return command


@pytest.fixture
def az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "AZ_LOG": str(tmp_path / "az.log")}


def _run(command, az: dict[str, str], **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**command.inputs["environment"], **az, **extra}
    return subprocess.run(["/bin/sh", "-c", command.inputs["create"]], env=env, capture_output=True, text=True,
                          timeout=30)


def _calls(az: dict[str, str]) -> list[str]:
    return Path(az["AZ_LOG"]).read_text().splitlines()


class TestAcrTaskBuild:
    def test_builds_the_tagged_context_with_the_pinned_arguments_and_prints_only_the_digest(
            self, prod_run: ProgramRun, az: dict[str, str]) -> None:
        build = _command(prod_run, "-acr-build")
        env = build.inputs["environment"]
        result = _run(build, az)
        assert result.returncode == 0, result.stderr
        assert _checked_digest(result.stdout) == DIGEST
        assert "Step 1/9" in result.stderr, "the build log must not reach the digest on stdout"
        registry, image = env["REGISTRY"], env["IMAGE"]
        assert _calls(az) == [
            f"acr build --registry {registry} --image {image} --file {env['DOCKERFILE']} --platform linux/amd64 "
            f"--build-arg BASE_IMAGE={env['BASE_IMAGE']} --build-arg SOURCE_DATE_EPOCH={env['SOURCE_DATE_EPOCH']} "
            f"{env['CONTEXT']}",
            f"acr repository show --name {registry} --image {image} --query digest --output tsv",
        ]
        assert image.endswith(":" + build.inputs["triggers"][0]), "the image is tagged with the context digest"

    def test_a_failed_build_stops_before_a_digest_is_read(self, prod_run: ProgramRun, az: dict[str, str]) -> None:
        result = _run(_command(prod_run, "-acr-build"), az, AZ_BUILD_FAILS="1")
        assert result.returncode != 0
        assert not [call for call in _calls(az) if call.startswith("acr repository")]
        with pytest.raises(ImageBuildError):
            _checked_digest(result.stdout)

    def test_a_tag_where_the_digest_should_be_is_refused(self, prod_run: ProgramRun, az: dict[str, str]) -> None:
        result = _run(_command(prod_run, "-acr-build"), az, AZ_SHOWS="latest")
        assert result.returncode == 0
        with pytest.raises(ImageBuildError, match="sha256 digest"):
            _checked_digest(result.stdout)  # Fail closed: the policy would measure a moving tag.


class TestDockerRegistryLogin:
    def test_logs_in_to_the_stacks_registry_and_prints_nothing_on_stdout(
            self, dev_run: ProgramRun, az: dict[str, str]) -> None:
        login = _command(dev_run, "-registry-login")
        result = _run(login, az)
        assert result.returncode == 0
        assert _calls(az) == [f"acr login --name {login.inputs['environment']['REGISTRY']}"]
        assert result.stdout == "" and "Login Succeeded" in result.stderr
