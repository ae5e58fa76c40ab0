"""Issue 15's goals as ratios of one run's figures, each with a verdict line."""

from __future__ import annotations

from dataclasses import dataclass

from latency import NEW_QUERY_TEXT


@dataclass(frozen=True)
class Verdict:
    goal: str
    measured: str
    met: bool

    def line(self) -> str:
        return f"goal {self.goal}: {'MET' if self.met else 'NOT MET'}: {self.measured}"


def _ratio(stats: dict, side: str, base: str, metric: str = "p50") -> float:
    return stats[side][metric] / stats[base][metric]


def verdicts(results: dict) -> list[Verdict]:
    """Every goal that this run measured, in issue order."""
    found: list[Verdict] = []
    latency = results.get("latency")
    if latency:
        database = latency["database"]
        vs_reference = _ratio(database, "full query_database", "reference query_database")
        vs_trivial = _ratio(database, "full query_database", "full echo")
        trips = results.get("pool", {}).get("pool", {}).get("round_trips")
        trips_text = f"; {trips:.1f} Postgres round trips per query" if trips is not None else ""
        # The goal's query repeats, so the guard answers it from memory; show a never-seen text beside it.
        new_text = (f"; a new text each call: {_ratio(database, NEW_QUERY_TEXT, 'full echo'):.2f}x echo"
                    if NEW_QUERY_TEXT in database else "")
        found.append(Verdict("1 (query_database p50 <= 0.5x reference, <= 1.3x own trivial tool)",
                             f"{vs_reference:.2f}x reference, {vs_trivial:.2f}x echo{new_text}{trips_text}",
                             vs_reference <= 0.5 and vs_trivial <= 1.3))
        stack = latency["stack"]
        p50, p99 = _ratio(stack, "full echo", "bare echo"), _ratio(stack, "full echo", "bare echo", "p99")
        found.append(Verdict("2 (assembled stack <= 1.05x bare FastMCP at p50 and p99)",
                             f"p50 {p50:.2f}x, p99 {p99:.2f}x", p50 <= 1.05 and p99 <= 1.05))
        status = _ratio(latency["status"], "full attestation_status", "reference attestation_status")
        found.append(Verdict("3 (attestation_status p50 <= 1.0x reference)", f"{status:.2f}x", status <= 1.0))
    saturation = results.get("saturation")
    if saturation:
        ratios = {level: sides["full"]["calls_per_s"] / sides["bare"]["calls_per_s"]
                  for level, sides in saturation["trivial"].items()}
        refusals_32 = sum(count for outcome, count in saturation["upstreams"]["query_database"]["32"]["outcomes"].items()
                          if outcome != "ok") if "32" in saturation["upstreams"]["query_database"] else None
        found.append(Verdict("4 (full/bare throughput >= 0.8x at 8, 32, 128 clients; no refusals for 32 on query_database)",
                             ", ".join(f"{level}: {ratio:.2f}x" for level, ratio in ratios.items())
                             + f"; query_database x32 refusals or errors: {refusals_32}",
                             all(ratio >= 0.8 for ratio in ratios.values()) and refusals_32 == 0))
    startup = results.get("startup")
    if startup:
        slowest = max(startup["median_s"][name] for name in startup.get("goal_commands", startup["median_s"]))
        found.append(Verdict(f"5 (start-up of --help, dev-token, verify-token < {startup['goal_s']} s)",
                             f"slowest median {slowest:.2f} s", bool(startup["goal_met"])))
    return found
