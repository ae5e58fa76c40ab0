"""Entry point of the `mcp-tee-guards` policy pack: `pulumi preview --policy-pack policy/pack`."""

import sys
from pathlib import Path

# The pack runs from its own folder; make the repo root importable so it shares `policy.*`.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.pack.policies import PACK_NAME, POLICIES  # noqa: E402

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
