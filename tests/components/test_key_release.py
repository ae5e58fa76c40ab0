"""The second deploy: a new image gives a new key under the same logical resource, the old key is
retained (never deleted), every secret is re-sealed to the new key, and the groups wait for that."""

from __future__ import annotations

import hashlib
import time

import pytest

from components.config import MAX_KEY_EXPIRY_DAYS
from components.key_release import SECONDS_PER_DAY
from policy.pack.rules import RETAIN_TAG
from tests.components.harness import ProgramRun, run_program

KEY = "azure-native:keyvault:Key"
GROUP = "azure-native:containerinstance:ContainerGroup"
NEW_BASE = "python:3.11-slim-bookworm@sha256:" + hashlib.sha256(b"next base image").hexdigest()


def _seal_steps(run: ProgramRun) -> dict[str, object]:
    return {r.inputs["environment"]["SECRET_NAME"]: r for r in run.of_type("command:local:Command")
            if r.name.startswith("seal-")}


def _trigger(step) -> list:
    return step.inputs["triggers"]["value"]


@pytest.fixture(scope="module")
def first() -> ProgramRun:
    return run_program("dev")


@pytest.fixture(scope="module")
def second() -> ProgramRun:
    """The same stack after a new base image: a new image digest, so a new hostdata."""
    return run_program("dev", overrides={"mcp-tee:baseImage": NEW_BASE})


class TestSecondDeploy:
    def test_new_image_gives_a_new_key_under_the_same_logical_resource(self, first: ProgramRun,
                                                                      second: ProgramRun) -> None:
        assert first.stack_outputs["image_ref"] != second.stack_outputs["image_ref"]
        old, new = first.one(KEY), second.one(KEY)
        assert old.inputs["keyName"] != new.inputs["keyName"]
        # Same URN: the engine replaces this resource, it does not add one and drop another.
        assert old.urn == new.urn

    def test_the_replaced_key_is_retained_not_deleted(self, first: ProgramRun, second: ProgramRun) -> None:
        for run in (first, second):
            key = run.one(KEY)
            assert key.options["retainOnDelete"] is True, "the old key must survive its replacement"
            assert key.options["protect"] is False, "a protected key would block the replacement"
            assert key.inputs["tags"] == {RETAIN_TAG: "true"}, "CrossGuard sees retention through this tag"

    def test_every_secret_is_resealed_to_the_new_key(self, first: ProgramRun, second: ProgramRun) -> None:
        before, after = _seal_steps(first), _seal_steps(second)
        assert before.keys() == after.keys() == {"github-token", "db-connection-string", "webhook-url"}
        new_key = second.one(KEY).outputs["keyUriWithVersion"]
        for name in before:
            assert _trigger(before[name])[0] != _trigger(after[name])[0], f"{name}: no re-seal for the new key"
            assert _trigger(after[name])[0] == new_key
            assert after[name].inputs["environment"]["KEY_NAME"] == second.stack_outputs["key_name"]
            assert _trigger(before[name])[1] == _trigger(after[name])[1], "the value did not change"

    def test_groups_start_only_after_the_seal_steps(self, second: ProgramRun) -> None:
        steps = {step.urn for step in _seal_steps(second).values()}
        for group in second.of_type(GROUP):
            assert steps <= set(group.options["dependencies"]), \
                f"{group.name} may start before the secrets are sealed to its key"

    def test_a_changed_secret_reseals_only_that_secret(self, first: ProgramRun) -> None:
        run = run_program("dev", overrides={"mcp-tee:webhookUrl": "https://hooks.example/rotated"},
                          secret_keys=("mcp-tee:webhookUrl",))
        before, after = _seal_steps(first), _seal_steps(run)
        changed = {name for name in before if _trigger(before[name]) != _trigger(after[name])}
        assert changed == {"webhook-url"}
        assert run.stack_outputs["key_name"] == first.stack_outputs["key_name"]


class TestRotationAndExpiry:
    def test_rotation_label_gives_a_new_key_for_the_same_hostdata(self, first: ProgramRun) -> None:
        run = run_program("dev", overrides={"mcp-tee:keyRotation": "2"})
        assert run.stack_outputs["expected_hostdata"] == first.stack_outputs["expected_hostdata"]
        assert run.stack_outputs["key_name"] != first.stack_outputs["key_name"]

    def test_key_expires_after_the_configured_days_and_keeps_its_creation_expiry(self, first: ProgramRun) -> None:
        key = first.one(KEY)
        days = first.stack_outputs["key_expiry_days"]
        assert days == 180 <= MAX_KEY_EXPIRY_DAYS
        expires = key.inputs["properties"]["attributes"]["expires"]
        assert abs(expires - (time.time() + days * SECONDS_PER_DAY)) < 3600
        assert "properties.attributes.expires" in key.options["ignoreChanges"]
