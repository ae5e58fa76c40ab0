"""Start-up time of every `mcp-tee` subcommand: wall clock of a fresh process, median of N runs.

    python bench/startup.py [--samples 5] [--json]

`--help` is measured for the top level and for each subcommand. `dev-token` and `verify-token`
are also run for real: `dev-token` mints with a throwaway issuer key, and `verify-token` checks a
token against an issuer that is not https, which it refuses before any network call, so the
figure is the command's own start-up and nothing else. Goal (issue 15, goal 5): `--help`,
`dev-token` and `verify-token` under 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.cli.commands import COMMANDS  # noqa: E402

GOAL_S = 0.5
GOAL_COMMANDS = ("--help", "dev-token", "verify-token")


def _cases(scratch: Path) -> dict[str, list[str]]:
    token = scratch / "token.jwt"
    token.write_text("a.b.c")
    cases = {"--help": ["--help"]}
    cases.update({f"{command.name} --help": [command.name, "--help"] for command in COMMANDS})
    cases["dev-token"] = ["dev-token", "--issuer-dir", str(scratch / "issuer"),
                          "--audience", "http://127.0.0.1:8080/mcp"]
    cases["verify-token"] = ["verify-token", "--token", str(token), "--issuer", "http://attest.example.com",
                             "--expect-hostdata", "ab" * 32]
    return cases


def _time_once(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - started


def run(samples: int) -> dict:
    """Median seconds per case, and the verdict on the goal."""
    with tempfile.TemporaryDirectory() as scratch:
        cases = _cases(Path(scratch))
        _time_once(cases["dev-token"])  # creates the throwaway issuer key outside the measurement
        medians = {name: statistics.median(_time_once(argv) for _ in range(samples)) for name, argv in cases.items()}
    goal = {name: medians[name] for name in GOAL_COMMANDS}
    return {"samples": samples, "median_s": {name: round(value, 3) for name, value in medians.items()},
            "goal_s": GOAL_S, "goal_met": all(value < GOAL_S for value in goal.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5, help="runs per case (the median is reported)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    result = run(args.samples)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"mcp-tee start-up, median of {args.samples} fresh processes:")
        for name, seconds in result["median_s"].items():
            print(f"  {name:<26} {seconds:6.3f} s{'   (goal)' if name in GOAL_COMMANDS else ''}")
        verdict = "MET" if result["goal_met"] else "NOT MET"
        print(f"goal 5, start-up under {GOAL_S} s for {', '.join(GOAL_COMMANDS)}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
