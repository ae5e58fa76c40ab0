"""Hashes a Docker build context exactly as `.dockerignore` shapes it, so the image tag moves only with the image.

Threat model: the image digest is measured into the CCE policy, so a new digest means new hostdata,
a new release key and a re-seal. A tag that moved with files the build never sees (docs, local
`.mcp-tee/` state, `.hypothesis/`) would rebuild and rotate for nothing, and a tag that missed a
file the build does see would skip a rebuild that changes what runs. So the digest covers what the
builder receives and nothing else: the files `.dockerignore` keeps (Docker's own matching rules:
patterns anchored at the context root, `*` and `?` within one path segment, `**` across segments,
`!` re-includes, the last matching line wins, a match on a directory covers everything below it),
their paths, bytes, executable bits and symlink targets, plus the Dockerfile, `.dockerignore` and
the build arguments. Timestamps and ownership are not hashed: they do not survive into a build
that sets `SOURCE_DATE_EPOCH`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

DOCKERIGNORE = ".dockerignore"


_WILDCARDS = re.compile(r"[*?\[\\]")


@dataclass(frozen=True)
class IgnoreRule:
    """One `.dockerignore` line: the compiled pattern, whether it re-includes (`!`), and its literal start."""

    pattern: re.Pattern[str]
    reinclude: bool
    literal_prefix: str

    def may_match_below(self, directory: str) -> bool:
        """Whether anything under `directory` could match (used to skip walking ignored trees)."""
        below = directory + "/"
        return below.startswith(self.literal_prefix) or self.literal_prefix.startswith(below)


def _translate(pattern: str) -> str:
    """Docker's pattern language as a Python regex (anchored by `fullmatch`)."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
            # `**` at the end takes everything; elsewhere it spans zero or more whole segments.
            out.append(".*" if i >= len(pattern) else "(?:.*/)?")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = pattern[i + 1:end]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out)


def parse_dockerignore(text: str) -> tuple[IgnoreRule, ...]:
    """The rules of one `.dockerignore` file, in order; comments and blank lines dropped."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        reinclude = line.startswith("!")
        if reinclude:
            line = line[1:].strip()
        # Docker cleans each pattern as a path and anchors it at the context root.
        cleaned = os.path.normpath(line).lstrip("/") if line else line
        if cleaned in ("", "."):
            continue
        literal = cleaned[:_WILDCARDS.search(cleaned).start()] if _WILDCARDS.search(cleaned) else cleaned
        rules.append(IgnoreRule(re.compile(_translate(cleaned), re.DOTALL), reinclude, literal))
    return tuple(rules)


def is_ignored(relpath: str, rules: tuple[IgnoreRule, ...]) -> bool:
    """Whether Docker leaves `relpath` (slash-separated, relative) out of the context."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for rule in rules:
        if any(rule.pattern.fullmatch(prefix) for prefix in prefixes):
            ignored = not rule.reinclude
    return ignored


def context_files(root: Path, rules: tuple[IgnoreRule, ...]) -> Iterator[str]:
    """Relative paths of every file or symlink the builder receives, in sorted order."""
    reincludes = [rule for rule in rules if rule.reinclude]

    def prunable(directory: str) -> bool:
        # An ignored directory is skipped unless some `!` line could bring back something below it.
        return is_ignored(directory, rules) and not any(rule.may_match_below(directory) for rule in reincludes)

    for current, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(current, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        kept_dirs = []
        for name in sorted(dirs):
            path = root / (rel_dir + name)
            if path.is_symlink():
                files.append(name)
            elif not prunable(rel_dir + name):
                kept_dirs.append(name)
        dirs[:] = kept_dirs
        for name in sorted(files):
            if not is_ignored(rel_dir + name, rules):
                yield rel_dir + name


def _entry_digest(path: Path) -> bytes:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return b"link\0" + os.readlink(path).encode()
    executable = b"x" if mode & 0o111 else b"-"
    return executable + hashlib.sha256(path.read_bytes()).digest()


def context_digest(context: str | Path, dockerfile: str | Path, build_args: Mapping[str, str] | None = None) -> str:
    """The 64-hex digest of everything that decides the image: kept files, Dockerfile, build args."""
    root = Path(context)
    ignore_file = root / DOCKERIGNORE
    ignore_text = ignore_file.read_text(encoding="utf-8") if ignore_file.exists() else ""
    rules = parse_dockerignore(ignore_text)
    digest = hashlib.sha256()
    for relpath in context_files(root, rules):
        digest.update(b"file\0" + relpath.encode() + b"\0" + _entry_digest(root / relpath))
    digest.update(b"dockerignore\0" + hashlib.sha256(ignore_text.encode()).digest())
    digest.update(b"dockerfile\0" + hashlib.sha256(Path(dockerfile).read_bytes()).digest())
    for name, value in sorted((build_args or {}).items()):
        digest.update(b"arg\0" + name.encode() + b"=" + value.encode() + b"\0")
    return digest.hexdigest()
