"""`mcp-tee capability attenuate|inspect`: tokens on stdin/stdout only, verified against the root key first."""

from __future__ import annotations

import io
import json

import pytest

from app.cli import main
from app.delegation.keys import CapabilityRoot
from app.delegation.token import verify_presented
from tests.delegation.helpers import minted


@pytest.fixture(scope="module")
def root() -> CapabilityRoot:
    return CapabilityRoot.per_process()


def run(monkeypatch, capsys, argv: list[str], stdin: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


class TestAttenuateCommand:
    def test_narrows_the_token_on_stdin(self, root, monkeypatch, capsys) -> None:
        argv = ["capability", "attenuate", "--root-key", root.public_key_b64, "--tools", "query_database",
                "--tables", "issues,incidents", "--max-rows", "50", "--ttl", "10m", "--channel", "general",
                "--max-calls", "20", "--context", "sub-agent: triage-bot"]
        code, out, err = run(monkeypatch, capsys, argv, minted(root) + "\n")
        assert code == 0 and err == ""
        capability = verify_presented(out, root.public_key)
        source = capability.token.block_source(1)
        for expected in ('"query_database"', '"issues"', "$n > 50", '"general"', "call_count(1, $n), $n <= 20"):
            assert expected in source
        assert capability.contexts == ("sub-agent: triage-bot",)

    def test_root_key_from_the_environment(self, root, monkeypatch, capsys) -> None:
        monkeypatch.setenv("MCP_TEE_CAPABILITY_PUB", root.public_key_b64)
        code, out, _ = run(monkeypatch, capsys, ["capability", "attenuate", "--max-rows", "5"], minted(root))
        assert code == 0 and verify_presented(out, root.public_key).token.block_count() == 2

    def test_token_of_another_root_is_refused_without_echoing_it(self, root, monkeypatch, capsys) -> None:
        foreign = minted(CapabilityRoot.per_process())
        code, out, err = run(monkeypatch, capsys, ["capability", "attenuate", "--root-key", root.public_key_b64,
                                                   "--max-rows", "5"], foreign)
        assert code == 1 and out == "" and "not signed" in err
        assert foreign[10:40] not in err

    def test_missing_root_key_is_a_usage_error(self, root, monkeypatch, capsys) -> None:
        monkeypatch.delenv("MCP_TEE_CAPABILITY_PUB", raising=False)
        code, _, err = run(monkeypatch, capsys, ["capability", "attenuate", "--max-rows", "5"], minted(root))
        assert code == 2 and "--root-key" in err

    def test_bad_narrowing_is_refused(self, root, monkeypatch, capsys) -> None:
        code, out, err = run(monkeypatch, capsys, ["capability", "attenuate", "--root-key", root.public_key_b64,
                                                   "--max-rows", "0"], minted(root))
        assert code == 2 and out == "" and "max_rows" in err


class TestInspectCommand:
    def test_prints_the_chain_not_the_token(self, root, monkeypatch, capsys) -> None:
        token = minted(root)
        code, out, _ = run(monkeypatch, capsys, ["capability", "inspect", "--root-key", root.public_key_b64], token)
        shown = json.loads(out)
        assert code == 0 and shown["root_principal"] == "alice" and len(shown["chain"]) == 1
        assert token[10:40] not in out
