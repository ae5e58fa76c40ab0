"""The house rules, checked on the import graph: no package cycles, and no lower layer imports a higher one.

Data walks one way: request → auth → policy middleware → tool → upstream → audit. The graph is read
from the source with `ast` (function-level, lazy imports included), so a rule cannot be dodged by
importing inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"

# Packages (or top-level modules) a package may never import, grouped by why.
# Nothing below the server may reach up into its assembly or its command line.
TOP_LAYERS = frozenset({"app.server", "app.cli"})
# The policy layers and the tools sit above the libraries they use.
REQUEST_LAYERS = frozenset({"app.middleware", "app.tools", *TOP_LAYERS})
FORBIDDEN_IMPORTS: dict[str, frozenset[str]] = {
    "app.tools": frozenset({"app.middleware", *TOP_LAYERS}),
    "app.middleware": TOP_LAYERS,
    "app.auth": frozenset({*REQUEST_LAYERS}),
    "app.audit": frozenset({"app.auth", *REQUEST_LAYERS}),
    "app.upstreams": frozenset({"app.auth", "app.audit", "app.sessions", *REQUEST_LAYERS}),
    "app.guards": frozenset({"app.auth", "app.audit", "app.upstreams", *REQUEST_LAYERS}),
    "app.secrets": frozenset({"app.auth", "app.audit", "app.sessions", *REQUEST_LAYERS}),
    "app.attestation": frozenset({"app.secrets", "app.auth", "app.audit", "app.sessions", *REQUEST_LAYERS}),
    "app.wire": frozenset({"app.attestation", "app.secrets", "app.auth", "app.audit", "app.sessions",
                           *REQUEST_LAYERS}),
    "app.emulator": frozenset({"app.attestation", "app.auth", "app.audit", "app.sessions", *REQUEST_LAYERS}),
    "app.devstack": frozenset({"app.auth", "app.audit", "app.sessions", *REQUEST_LAYERS}),
    "app.urls": frozenset({"app.config", *REQUEST_LAYERS}),
    "app.jwks": frozenset({"app.config", *REQUEST_LAYERS}),
    "app.errors": frozenset({"app.config", *REQUEST_LAYERS}),
    "app.sessions": frozenset({"app.auth", *REQUEST_LAYERS}),
    # Capability delegation is a library under the auth layer and the policy middleware.
    "app.delegation": frozenset({"app.audit", "app.upstreams", "app.secrets", "app.attestation", *REQUEST_LAYERS}),
}
# The agent is a client: it may use the shared wire formats and the verification library, never
# server state. This is an allow list.
AGENT_MAY_IMPORT = frozenset({
    "app", "app.agent", "app.wire", "app.urls", "app.jwks",
    "app.attestation.verifier", "app.attestation.maa_keys", "app.attestation.errors",
    "policy.release_policy",
})


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(APP.parent).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "app" or name.startswith(("app.", "policy."))}


GRAPH = {_module_name(path): _imports(path) for path in APP.rglob("*.py")}
MODULES = frozenset(GRAPH)


def _package(module: str) -> str:
    """`app.middleware.audit` → `app.middleware`; a top-level module is its own package."""
    parts = module.split(".")
    if len(parts) >= 2 and (APP / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def _real(names: set[str]) -> set[str]:
    """Keep the names that are modules (drop `from x import Name` attribute entries)."""
    return {name for name in names if name in MODULES or not name.startswith("app")}


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


class TestNoCycles:
    def test_no_package_imports_itself_back(self):
        edges: dict[str, set[str]] = {}
        for module, imported in GRAPH.items():
            for target in _real(imported):
                if target.startswith("app") and _package(target) != _package(module):
                    edges.setdefault(_package(module), set()).add(_package(target))

        def reachable(start: str) -> set[str]:
            seen, stack = set(), [start]
            while stack:
                for nxt in edges.get(stack.pop(), ()):
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            return seen

        cycles = sorted((a, b) for a, targets in edges.items() for b in targets if a in reachable(b))
        assert cycles == [], f"package import cycles: {cycles}"


class TestLayers:
    @pytest.mark.parametrize("package", sorted(FORBIDDEN_IMPORTS))
    def test_no_lower_layer_imports_a_higher_one(self, package):
        violations = sorted(
            (module, target)
            for module, imported in GRAPH.items() if _within(module, package)
            for target in _real(imported)
            if any(_within(target, forbidden) for forbidden in FORBIDDEN_IMPORTS[package])
        )
        assert violations == [], f"{package} reaches up: {violations}"

    def test_the_agent_imports_only_wire_formats_and_the_verifier(self):
        violations = sorted(
            (module, target)
            for module, imported in GRAPH.items() if _within(module, "app.agent")
            for target in _real(imported)
            if not any(_within(target, allowed) for allowed in AGENT_MAY_IMPORT)
        )
        assert violations == [], f"the agent imports server internals: {violations}"

    def test_a_forbidden_import_is_caught(self, tmp_path):
        """The checker itself: an up-call written into a tool module is reported."""
        bad = tmp_path / "bad.py"
        bad.write_text("def f():\n    from app.middleware.audit import AuditMiddleware\n")
        assert "app.middleware.audit" in _imports(bad)
