"""Shared program runs: each stack is run once under mocks and shared by every assertion."""

import pytest

from tests.components.harness import ProgramRun, run_program

CANARY = "canary-7f3c1e9d-do-not-leak"
# Where a careless program would pick secrets up: the process env and the provider's secret config.
CANARY_ENV = {"GITHUB_TOKEN": f"ghp_{CANARY}", "DB_CONNECTION_STRING": f"postgresql://u:{CANARY}@db/x",
              "WEBHOOK_URL": f"https://hooks.example.com/{CANARY}", "ARM_CLIENT_SECRET": CANARY}
CANARY_SECRET_CONFIG = {"azure-native:clientSecret": CANARY}
# The baseline secrets themselves: they may reach the seal steps' stdin, and nothing else.
BASELINE_CANARIES = {"mcp-tee:githubToken": f"ghp_baseline{CANARY}",
                     "mcp-tee:dbConnectionString": f"postgresql://app:baseline{CANARY}@db/app",
                     "mcp-tee:webhookUrl": f"https://hooks.example.com/baseline{CANARY}"}


@pytest.fixture(scope="session")
def dev_run() -> ProgramRun:
    """The dev stack from Pulumi.dev.yaml, with canary secrets planted in env, provider config and baseline."""
    secrets = {**CANARY_SECRET_CONFIG, **BASELINE_CANARIES}
    return run_program("dev", overrides=secrets, secret_keys=tuple(secrets), env=CANARY_ENV)


@pytest.fixture(scope="session")
def prod_run() -> ProgramRun:
    """The prod stack from Pulumi.prod.yaml (ACR Tasks builder, two replicas, stdio disabled)."""
    return run_program("prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def stack_run(request, dev_run: ProgramRun, prod_run: ProgramRun) -> ProgramRun:
    """Each stack's run in turn, for invariants that hold in every environment."""
    return {"dev": dev_run, "prod": prod_run}[request.param]
