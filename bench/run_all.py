"""`make bench`: run every benchmark once and regenerate docs/benchmarks.md and its chart.

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
import overhead  # noqa: E402
import pool  # noqa: E402
import report  # noqa: E402
import tee_startup  # noqa: E402
import verifier  # noqa: E402

RESULTS = report.ROOT / "bench" / "results" / "bench.json"
FULL = {"overhead": 500, "pool": 300, "verifier": 200, "tee_startup": 5, "channel": 200}
QUICK = {"overhead": 100, "pool": 60, "verifier": 40, "tee_startup": 2, "channel": 30}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for publishing)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    results = {}
    for name, measure in (("overhead", lambda n: overhead.summarize(overhead.run(n))), ("pool", pool.run),
                          ("verifier", verifier.run), ("tee_startup", tee_startup.run), ("channel", channel.run)):
        started = time.monotonic()
        print(f"bench: {name} ({sizes[name]}) ...", flush=True)
        results[name] = measure(sizes[name])
        print(f"bench: {name} done in {time.monotonic() - started:.0f} s: {json.dumps(results[name])}", flush=True)
    results["machine"] = report.machine()
    results["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report.render(results)
    print(f"bench: wrote {report.DOC.relative_to(report.ROOT)} and {report.CHART.relative_to(report.ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
