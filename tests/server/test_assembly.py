"""Assembly fails closed in TEE mode: no attested TLS channel or no released capability seed, no server."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.config import ConfigError, Settings
from app.server.assembly import capability_root


class TestTeeCapabilityRoot:
    def test_a_tee_start_without_a_released_seed_is_refused_not_given_a_per_process_root(self):
        with pytest.raises(ConfigError, match="no capability root seed"):
            capability_root(Settings(), SimpleNamespace(capability_root_seed=None))

    def test_the_released_seed_gives_the_attested_root(self):
        root = capability_root(Settings(), SimpleNamespace(capability_root_seed=b"\x01" * 32))
        assert root.attested


class TestTeeChannel:
    def test_tee_mode_without_its_attested_tls_channel_is_refused(self, tmp_path):
        from app.secrets.env import load_env_secrets
        from app.server.assembly import assemble

        tee = SimpleNamespace(capability_root_seed=b"\x01" * 32)
        with pytest.raises(ConfigError, match="attested TLS channel"):
            assemble(Settings(audit_log=str(tmp_path / "audit.jsonl")), load_env_secrets({}), tee=tee, channel=None)
