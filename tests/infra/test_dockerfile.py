"""The Dockerfile builds what docs/ci.md says: digest-pinned base, hashed locks, fixed time, non-root.

Threat model: the image digest is measured into the CCE policy, and the release key follows it, so
anything that lets the same commit produce another image (a floating base, an unhashed package, a
timestamp, a file outside the allow-list) silently rotates the key; a secret in the image would be
readable by anyone who can pull it.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
CI_DOC = REPO / "docs" / "ci.md"
IMAGE_LOCKS = ("requirements/build.txt", "requirements/runtime.txt")
SECRET_WORDS = frozenset({"SECRET", "TOKEN", "PASSWORD", "PASSPHRASE", "CONNECTION_STRING", "CLIENT_SECRET"})


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip() if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def run_commands(parsed: list[tuple[str, str]]) -> list[str]:
    """Each shell command of every RUN, split on `&&`."""
    return [" ".join(command.split()) for kind, args in parsed if kind == "RUN" for command in args.split("&&")]


def pip_installs(parsed: list[tuple[str, str]]) -> list[str]:
    return [command for command in run_commands(parsed) if command.startswith("pip install")]


def secret_like_names(parsed: list[tuple[str, str]]) -> list[str]:
    """ARG and ENV names that look like credentials (anything in them is readable by whoever pulls)."""
    names = [name for kind, args in parsed if kind in ("ARG", "ENV") for name in re.findall(r"(\w+)=", args)]
    names += [args.split()[0] for kind, args in parsed if kind == "ARG" and "=" not in args]
    return [name for name in names if any(word in name.upper() for word in SECRET_WORDS)]


def documented_lines() -> list[str]:
    (block,) = re.findall(r"```dockerfile\n(.*?)```", CI_DOC.read_text(), re.DOTALL)
    return [line.strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


class TestBaseAndTime:
    def test_base_image_is_a_required_argument(self, parsed: list[tuple[str, str]]) -> None:
        assert parsed[0] == ("ARG", "BASE_IMAGE"), "BASE_IMAGE must come first and have no default"
        assert [args for kind, args in parsed if kind == "FROM"] == ["${BASE_IMAGE}"]

    def test_source_date_epoch_is_required_inside_the_stage(self, parsed: list[tuple[str, str]]) -> None:
        kinds = [kind for kind, _ in parsed]
        assert parsed.index(("ARG", "SOURCE_DATE_EPOCH")) > kinds.index("FROM")
        first_run = run_commands([next(item for item in parsed if item[0] == "RUN")])[0]
        assert first_run.startswith('test -n "${SOURCE_DATE_EPOCH}" ||')


class TestInstallsOnlyHashedLocks:
    def test_dependencies_come_from_the_hashed_locks_and_the_project_without_deps(
            self, parsed: list[tuple[str, str]]) -> None:
        assert pip_installs(parsed) == [
            *[f"pip install --require-hashes --no-deps -r {lock}" for lock in IMAGE_LOCKS],
            "pip install --no-deps --no-build-isolation --no-index ."]

    def test_the_locks_it_installs_are_copied_in(self, parsed: list[tuple[str, str]]) -> None:
        copied = [source for kind, args in parsed if kind == "COPY" for source in shlex.split(args)[:-1]]
        assert set(IMAGE_LOCKS) <= set(copied)

    def test_the_check_catches_an_unhashed_install(self) -> None:
        text = DOCKERFILE.read_text().replace("--require-hashes --no-deps -r requirements/runtime.txt",
                                              "-r requirements/runtime.txt")
        assert "pip install -r requirements/runtime.txt" in pip_installs(instructions(text))


class TestContext:
    def _allowed(self) -> list[str]:
        lines = [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert lines[0] == "*", ".dockerignore is an allow-list: it starts by excluding everything"
        return [line[1:] for line in lines if line.startswith("!")]

    def test_every_copied_path_exists_and_is_allowed_and_nothing_else_is(self, parsed: list[tuple[str, str]]) -> None:
        copied = {source for kind, args in parsed if kind == "COPY" for source in shlex.split(args)[:-1]}
        assert {source for source in copied if not (REPO / source).exists()} == set()
        assert set(self._allowed()) == copied


class TestRuntime:
    def test_runs_as_a_fixed_non_root_user(self, parsed: list[tuple[str, str]]) -> None:
        (user,) = [args for kind, args in parsed if kind == "USER"]
        uid, gid = user.split(":")
        assert int(uid) >= 1000 and int(gid) >= 1000
        assert f'echo "mcp:x:{uid}:{gid}::/nonexistent:/usr/sbin/nologin" >> /etc/passwd' in run_commands(parsed)
        assert not any("useradd" in command for command in run_commands(parsed))

    def test_serves_on_443_with_the_port_from_config(self, parsed: list[tuple[str, str]]) -> None:
        assert [args for kind, args in parsed if kind == "EXPOSE"] == ["443"]
        (entrypoint,) = [json.loads(args) for kind, args in parsed if kind == "ENTRYPOINT"]
        assert entrypoint == ["mcp-tee", "serve", "--host", "0.0.0.0"]
        assert not any(kind == "CMD" for kind, _ in parsed)

    def test_no_secret_is_baked_in(self, parsed: list[tuple[str, str]]) -> None:
        assert secret_like_names(parsed) == []

    def test_the_check_catches_a_token_in_env(self) -> None:
        text = DOCKERFILE.read_text().replace("PIP_NO_CACHE_DIR=1 \\", "PIP_NO_CACHE_DIR=1 GITHUB_TOKEN=x \\")
        assert secret_like_names(instructions(text)) == ["GITHUB_TOKEN"]


class TestDocsMatch:
    def test_every_documented_line_is_in_the_dockerfile(self, parsed: list[tuple[str, str]]) -> None:
        actual = {f"{kind} {args}".strip() for kind, args in parsed if kind != "RUN"} | set(pip_installs(parsed))
        assert [line for line in documented_lines() if line not in actual] == []

    def test_every_arg_and_install_is_documented(self, parsed: list[tuple[str, str]]) -> None:
        claimed = set(documented_lines())
        significant = [f"{kind} {args}" for kind, args in parsed if kind in ("ARG", "FROM", "USER", "EXPOSE",
                                                                              "ENTRYPOINT")]
        assert [line for line in significant + pip_installs(parsed) if line not in claimed] == []
