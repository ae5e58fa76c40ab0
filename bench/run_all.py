"""`make bench`: run every benchmark once, print a verdict line per goal, regenerate docs/benchmarks.md and its chart.

    python bench/run_all.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import channel  # noqa: E402
import goals  # noqa: E402
import latency  # noqa: E402
import pool  # noqa: E402
import report  # noqa: E402
import saturation  # noqa: E402
import startup  # noqa: E402
import tee_startup  # noqa: E402
import verifier  # noqa: E402

RESULTS = report.ROOT / "bench" / "results" / "bench.json"
# 1000 rounds: a p99 then rests on ten calls, not four, so one stall of the machine does not decide it.
FULL = {"latency": 1000, "pool": 300, "saturation": 4.0, "verifier": 200, "tee_startup": 5, "channel": 200, "startup": 5}
QUICK = {"latency": 60, "pool": 60, "saturation": 1.5, "verifier": 40, "tee_startup": 2, "channel": 30, "startup": 2}


def _startup(samples: int) -> dict:
    result = startup.run(samples)
    result["goal_commands"] = list(startup.GOAL_COMMANDS)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for publishing)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    stages = {"latency": latency.run, "pool": pool.run, "saturation": saturation.run, "verifier": verifier.run,
              "tee_startup": tee_startup.run, "channel": channel.run, "startup": _startup}
    results = {"machine_before": report.machine()}
    for name, measure in stages.items():
        started = time.monotonic()
        print(f"bench: {name} ({sizes[name]}) ...", flush=True)
        # JSON keys are strings: a round trip through json keeps one shape for the report and the verdicts.
        results[name] = json.loads(json.dumps(measure(sizes[name])))
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s", flush=True)
    results["machine"] = report.machine()
    results["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    results["verdicts"] = [verdict.line() for verdict in goals.verdicts(results)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report.render(results)
    print(f"bench: wrote {report.DOC.relative_to(report.ROOT)} and {report.CHART.relative_to(report.ROOT)}")
    for line in results["verdicts"]:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
