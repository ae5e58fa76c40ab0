"""Run what you deploy: the seal step's exact command line, env and stdin, against the emulator's Key Vault.

Only the vault URL differs (it points at the emulator), as TEE mode differs from Azure only in
endpoints. A shim in front of `mcp-tee` records every argv, so the test sees that the secret never
became an argument of any process.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.emulator.server import RunningEmulator, start_emulator
from app.secrets.jwe import unseal
from tests.components.harness import ProgramRun, run_program
from tests.support.canaries import ALL_CANARIES, CANARY_DB_PASSWORD, CANARY_GITHUB_TOKEN, CANARY_WEBHOOK_PATH

VENV_BIN = Path(sys.executable).parent
BASELINE = {"mcp-tee:githubToken": CANARY_GITHUB_TOKEN,
            "mcp-tee:dbConnectionString": f"postgresql://app:{CANARY_DB_PASSWORD}@db.example/app",
            "mcp-tee:webhookUrl": f"https://hooks.slack.example{CANARY_WEBHOOK_PATH}"}
SHIM = """#!/bin/sh
printf '%s\\n' "$*" >> "$ARGV_LOG"
exec "$REAL_MCP_TEE" "$@"
"""


@pytest.fixture(scope="module")
def deployed() -> ProgramRun:
    return run_program("dev", overrides=BASELINE, secret_keys=tuple(BASELINE))


@pytest.fixture(scope="module")
def emulator(deployed: ProgramRun) -> RunningEmulator:
    """A vault stand-in holding the stack's release key under the stack's key name."""
    policy = base64.b64encode(b"package policy\n").decode()
    with start_emulator(policy, key_name=deployed.stack_outputs["key_name"]) as running:
        yield running


def _steps(run: ProgramRun) -> list:
    return [r for r in run.of_type("command:local:Command") if r.name.startswith("seal-")]


def _run_step(step, emulator: RunningEmulator, tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess[str]:
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir(exist_ok=True)
    (shim_dir / "mcp-tee").write_text(SHIM)
    (shim_dir / "mcp-tee").chmod(0o755)
    env = {
        "PATH": f"{shim_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "ARGV_LOG": str(tmp_path / "argv.log"),
        "REAL_MCP_TEE": str(VENV_BIN / "mcp-tee"),
        **step.inputs["environment"],
        # The one endpoint that differs, plus what lets the real SDK reach and trust the stand-in.
        "VAULT_URL": emulator.vault_url, "AKV_CA_FILE": emulator.ca_file, **emulator.identity_env,
        **overrides,
    }
    return subprocess.run(["/bin/sh", "-c", step.inputs["create"]], input=step.inputs["stdin"]["value"], env=env,
                          capture_output=True, text=True, timeout=120)


class TestSealStep:
    def test_each_step_seals_its_secret_to_the_release_key(self, deployed: ProgramRun, emulator: RunningEmulator,
                                                          tmp_path: Path) -> None:
        steps = _steps(deployed)
        assert len(steps) == 3
        for step in steps:
            result = _run_step(step, emulator, tmp_path)
            assert result.returncode == 0, result.stderr[-2000:]
            name = step.inputs["environment"]["SECRET_NAME"]
            stored = emulator.state.get_secret(name)
            assert stored is not None, f"{name} was not written"
            assert unseal(stored["value"], emulator.state.keystore.key).decode() == step.inputs["stdin"]["value"]
            header = json.loads(base64.urlsafe_b64decode(stored["value"].split(".")[0] + "=="))
            assert header["kid"] == deployed.stack_outputs["key_name"]
            for canary in ALL_CANARIES:
                assert canary not in result.stdout + result.stderr, f"{name}: a secret reached the step's output"
                assert canary not in stored["value"]
        argv = (tmp_path / "argv.log").read_text()
        assert argv.count("seal --vault") == 3
        assert not any(canary in argv for canary in ALL_CANARIES), "a secret became a process argument"

    def test_a_step_that_cannot_seal_fails_after_its_retries_without_leaking(self, deployed: ProgramRun,
                                                                            emulator: RunningEmulator,
                                                                            tmp_path: Path) -> None:
        step = _steps(deployed)[0]
        result = _run_step(step, emulator, tmp_path, KEY_NAME="no-such-key", SEAL_ATTEMPTS="2", SEAL_RETRY_S="0")
        assert result.returncode == 1
        assert "failed 2 times" in result.stderr
        assert (tmp_path / "argv.log").read_text().count("seal --vault") == 2
        assert not any(canary in result.stdout + result.stderr for canary in ALL_CANARIES)
