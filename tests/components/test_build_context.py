"""The build-context digest: Docker's `.dockerignore` rules, and the same commit giving the same digest."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from components.build_context import context_digest, context_files, is_ignored, parse_dockerignore

REPO = Path(__file__).resolve().parents[2]
ARGS = {"BASE_IMAGE": "python:3.11-slim-bookworm@sha256:" + "a" * 64, "SOURCE_DATE_EPOCH": "1767225600"}
# Local state and material the image never sees: touching any of them must not move the tag.
LOCAL_ONLY = (".mcp-tee/dev-issuer/key.pem", ".hypothesis/examples/x", "docs/new-page.md", "tests/new_test.py",
              ".pytest_cache/v/cache", "app/__pycache__/x.cpython-311.pyc", ".venv/bin/python3")


def _checkout_of_head(target: Path) -> Path:
    """The committed tree of HEAD, as a fresh clone would have it."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="tar")
    return target


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkout_of_head(tmp_path_factory.mktemp("head"))


def _digest(root: Path) -> str:
    return context_digest(root, root / "Dockerfile", ARGS)


class TestDockerignoreRules:
    @pytest.mark.parametrize("patterns, path, ignored", [
        ("tests", "tests/unit/test_x.py", True),           # a directory match covers what is below it
        ("tests", "app/tests/x.py", False),                # patterns are anchored at the context root
        ("/docs/", "docs/a.md", True),                     # leading and trailing slashes are cleaned away
        ("**/__pycache__", "__pycache__/a.pyc", True),     # `**` spans zero segments...
        ("**/__pycache__", "app/x/__pycache__/a.pyc", True),  # ...or several
        ("*.md", "README.md", True),
        ("*.md", "docs/a.md", False),                      # `*` stays inside one segment
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[!x]y", "ay", True),
        ("[!x]y", "xy", False),
        ("docs\n!docs/keep.md", "docs/keep.md", False),   # `!` re-includes, the last match wins
        ("docs\n!docs/keep.md", "docs/other.md", True),
        ("!docs/keep.md\ndocs", "docs/keep.md", True),
        ("*\n!app\n!pyproject.toml", "app/cli.py", False),   # allow-list style
        ("*\n!app\n!pyproject.toml", "bench/x.py", True),
        ("# comment\n\n  docs  ", "docs/a.md", True),
    ])
    def test_matches_docker_semantics(self, patterns: str, path: str, ignored: bool) -> None:
        assert is_ignored(path, parse_dockerignore(patterns)) is ignored

    def test_reincluded_file_below_an_ignored_directory_is_walked(self, tmp_path: Path) -> None:
        (tmp_path / "docs").mkdir()
        (tmp_path / "docs" / "keep.md").write_text("k")
        (tmp_path / "docs" / "drop.md").write_text("d")
        assert list(context_files(tmp_path, parse_dockerignore("docs\n!docs/keep.md"))) == ["docs/keep.md"]


class TestReproducibility:
    def test_same_commit_gives_the_same_digest(self, checkout: Path, tmp_path: Path) -> None:
        again = _checkout_of_head(tmp_path / "again")
        assert _digest(checkout) == _digest(again)

    @pytest.mark.parametrize("relpath", LOCAL_ONLY)
    def test_touching_an_ignored_path_changes_nothing(self, checkout: Path, relpath: str) -> None:
        rules = parse_dockerignore((checkout / ".dockerignore").read_text())
        assert is_ignored(relpath, rules), f"{relpath} must be in .dockerignore: it would rotate the key"
        before = _digest(checkout)
        target = checkout / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("local state")
        try:
            assert _digest(checkout) == before
        finally:
            target.unlink()

    def test_a_change_the_build_sees_moves_the_digest(self, checkout: Path) -> None:
        before = _digest(checkout)
        target = checkout / "app" / "__init__.py"
        original = target.read_bytes()
        target.write_bytes(original + b"\n# changed\n")
        try:
            assert _digest(checkout) != before
        finally:
            target.write_bytes(original)
        assert _digest(checkout) == before

    def test_an_executable_bit_moves_the_digest(self, checkout: Path) -> None:
        target = checkout / "app" / "__init__.py"
        before = _digest(checkout)
        target.chmod(0o755)
        try:
            assert _digest(checkout) != before
        finally:
            target.chmod(0o644)

    @pytest.mark.parametrize("name", sorted(ARGS))
    def test_build_arguments_move_the_digest(self, checkout: Path, name: str) -> None:
        changed = {**ARGS, name: ARGS[name] + "0"}
        assert context_digest(checkout, checkout / "Dockerfile", changed) != _digest(checkout)

    def test_dockerfile_moves_the_digest_even_when_ignored(self, tmp_path: Path) -> None:
        (tmp_path / ".dockerignore").write_text("Dockerfile\n")
        dockerfile = tmp_path / "Dockerfile"
        dockerfile.write_text("FROM scratch\n")
        before = context_digest(tmp_path, dockerfile, ARGS)
        dockerfile.write_text("FROM scratch\nUSER 1\n")
        assert context_digest(tmp_path, dockerfile, ARGS) != before


class TestWalk:
    def test_ignored_trees_no_reinclude_can_reach_are_not_walked(self, tmp_path: Path, monkeypatch) -> None:
        for directory in ("app", ".venv/lib", "docs"):
            (tmp_path / directory).mkdir(parents=True)
            (tmp_path / directory / "f.py").write_text("x")
        walked: list[str] = []
        real_walk = os.walk

        def recording_walk(top, *args, **kwargs):
            for current, dirs, files in real_walk(top, *args, **kwargs):
                walked.append(os.path.relpath(current, tmp_path))
                yield current, dirs, files

        monkeypatch.setattr("components.build_context.os.walk", recording_walk)
        rules = parse_dockerignore("*\n!app/\n!docs/keep.md")
        assert list(context_files(tmp_path, rules)) == ["app/f.py"]
        assert ".venv" not in walked and "docs" in walked, "only trees a `!` line could reach are walked"
