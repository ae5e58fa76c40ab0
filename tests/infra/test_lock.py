"""The hashed lock files under requirements/ agree with pyproject.toml (`make lock` writes them).

The image installs requirements/runtime.txt and `make test` installs requirements/dev.txt, both
with `--require-hashes`. When someone pins a new dependency in pyproject.toml and forgets
`make lock`, these tests name the package and the command instead of failing later on an import.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
REQUIREMENTS = REPO / "requirements"
LOCK_NAMES = ("build.txt", "uv.txt", "dev.txt", "runtime.txt")
# How uv marks a package that pyproject.toml asks for directly.
FROM_PYPROJECT = "mcp-tee (pyproject.toml)"


@dataclass(frozen=True)
class Locked:
    """One entry of a lock file: a universal lock may hold a package twice, under different markers."""

    name: str
    version: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]


def parse_lock(text: str) -> list[Locked]:
    """Read uv's `pip compile --generate-hashes` output (requirement, hash lines, `# via` lines)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line[0].isspace():
            blocks[-1].append(line.strip().rstrip("\\").strip())
        else:
            blocks.append([line.rstrip("\\").strip()])
    entries = []
    for head, *rest in blocks:
        name, version = head.split(";")[0].strip().split("==")
        hashes = tuple(line.removeprefix("--hash=") for line in rest if line.startswith("--hash="))
        via = tuple(re.sub(r"^# (via )?\s*", "", line) for line in rest if line.startswith("#") and line != "# via")
        entries.append(Locked(canonicalize_name(name), version, hashes, via))
    return entries


def read_locks() -> dict[str, list[Locked]]:
    return {name: parse_lock((REQUIREMENTS / name).read_text()) for name in LOCK_NAMES}


def read_pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _versions(entries: list[Locked]) -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for entry in entries:
        versions.setdefault(entry.name, set()).add(entry.version)
    return versions


def lock_mismatches(pyproject: dict[str, Any], locks: dict[str, list[Locked]]) -> list[str]:
    """Every way the lock files disagree with pyproject.toml, each as a sentence that says what to do."""
    runtime = [Requirement(text) for text in pyproject["project"]["dependencies"]]
    extras = [Requirement(text) for group in pyproject["project"]["optional-dependencies"].values() for text in group]
    problems = []
    for requirement in runtime + extras:
        if [spec.operator for spec in requirement.specifier] != ["=="]:
            problems.append(f"pyproject.toml: {requirement} is not pinned with ==")
    for lock_name, wanted in (("dev.txt", runtime + extras), ("runtime.txt", runtime)):
        locked = _versions(locks[lock_name])
        for requirement in wanted:
            name, pinned = canonicalize_name(requirement.name), {spec.version for spec in requirement.specifier}
            if name not in locked:
                problems.append(f"requirements/{lock_name} has no {name} (pyproject.toml pins {requirement}): "
                                "run `make lock`")
            elif locked[name] != pinned:
                problems.append(f"requirements/{lock_name} has {name}=={'/'.join(sorted(locked[name]))} but "
                                f"pyproject.toml pins {requirement}: run `make lock`")
        direct = {entry.name for entry in locks[lock_name] if FROM_PYPROJECT in entry.via}
        for name in sorted(direct - {canonicalize_name(r.name) for r in wanted}):
            problems.append(f"requirements/{lock_name} still locks {name} for pyproject.toml, which no longer "
                            "asks for it: run `make lock`")
    return problems


def new_mismatches(pyproject: dict[str, Any]) -> list[str]:
    """The mismatches a changed pyproject.toml adds to those of the committed one."""
    before = set(lock_mismatches(read_pyproject(), read_locks()))
    return [problem for problem in lock_mismatches(pyproject, read_locks()) if problem not in before]


class TestLockMatchesPyproject:
    def test_every_pin_is_locked_at_its_version(self) -> None:
        problems = lock_mismatches(read_pyproject(), read_locks())
        assert problems == [], "\n".join(problems)

    def test_a_new_dependency_without_make_lock_is_named(self) -> None:
        pyproject = read_pyproject()
        pyproject["project"]["dependencies"].append("never-locked==1.0")
        assert new_mismatches(pyproject) == [
            f"requirements/{name} has no never-locked (pyproject.toml pins never-locked==1.0): run `make lock`"
            for name in ("dev.txt", "runtime.txt")]

    def test_a_changed_pin_is_named(self) -> None:
        pyproject = read_pyproject()
        infra = pyproject["project"]["optional-dependencies"]["infra"]
        infra[:] = ["pulumi==0.0.1" if r.startswith("pulumi==") else r for r in infra]
        (problem,) = new_mismatches(pyproject)
        assert problem.startswith("requirements/dev.txt has pulumi==") and "pins pulumi==0.0.1" in problem

    def test_a_removed_dependency_is_named(self) -> None:
        pyproject = read_pyproject()
        dependencies = pyproject["project"]["dependencies"]
        locked = {entry.name for entry in read_locks()["runtime.txt"] if FROM_PYPROJECT in entry.via}
        removed = next(name for name in (canonicalize_name(Requirement(text).name) for text in dependencies)
                       if name in locked)
        dependencies[:] = [text for text in dependencies if canonicalize_name(Requirement(text).name) != removed]
        assert new_mismatches(pyproject) == [
            f"requirements/{name} still locks {removed} for pyproject.toml, which no longer asks for it: "
            "run `make lock`" for name in ("dev.txt", "runtime.txt")]

    def test_an_unpinned_dependency_is_refused(self) -> None:
        pyproject = read_pyproject()
        pyproject["project"]["optional-dependencies"]["dev"].append("pytest-randomly>=3")
        assert "pyproject.toml: pytest-randomly>=3 is not pinned with ==" in new_mismatches(pyproject)


class TestLockFiles:
    @pytest.mark.parametrize("name", LOCK_NAMES)
    def test_every_entry_carries_hashes_and_the_regenerate_command(self, name: str) -> None:
        text = (REQUIREMENTS / name).read_text()
        assert "#    make lock\n" in text
        entries = parse_lock(text)
        assert entries and [e.name for e in entries if not e.hashes] == []

    def test_the_image_set_is_the_dev_set_restricted_to_runtime(self) -> None:
        locks = read_locks()
        dev = {(e.name, e.version): e.hashes for e in locks["dev.txt"]}
        assert [e for e in locks["runtime.txt"] if dev.get((e.name, e.version)) != e.hashes] == []

    def test_the_build_backend_satisfies_build_system_requires(self) -> None:
        locked = _versions(read_locks()["build.txt"])
        for text in read_pyproject()["build-system"]["requires"]:
            requirement = Requirement(text)
            (version,) = locked[canonicalize_name(requirement.name)]
            assert requirement.specifier.contains(version), (requirement, version)

    def test_dev_holds_the_build_backend_and_uv_at_the_same_versions(self) -> None:
        locks = read_locks()
        dev = _versions(locks["dev.txt"])
        for entry in locks["build.txt"] + locks["uv.txt"]:
            assert dev[entry.name] == {entry.version}, entry.name

    def test_the_bootstrap_installs_every_extra(self) -> None:
        (extras,) = re.findall(r"^EXTRAS := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
        assert sorted(extras.split(",")) == sorted(read_pyproject()["project"]["optional-dependencies"])

    def test_uv_is_the_makefile_version(self) -> None:
        (uv,) = read_locks()["uv.txt"]
        (make_version,) = re.findall(r"^UV_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
        assert (uv.name, uv.version) == ("uv", make_version)
