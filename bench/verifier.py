"""MAA token verification time with a warm and a cold JWKS cache, the emulator as the issuer.

Cold: a new `JwksCache` per verification, so each one fetches `/certs` over loopback HTTP and
parses the x5c certificate. Warm: one cache, fetched once before timing. Both verify the same
freshly minted token with a nonce, the full check list included.

    python bench/verifier.py --rounds 200
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import latency_summary  # noqa: E402

from app.attestation.maa_keys import maa_jwks_cache  # noqa: E402
from app.wire.runtime_data import canonical_json  # noqa: E402
from app.attestation.verifier import verify_maa_token  # noqa: E402
from app.emulator.server import start_emulator  # noqa: E402

CCE_POLICY = base64.b64encode(b'package policy\napi_version := "0.10.0"\n# mcp-tee bench\n').decode()
NONCE = "bench-nonce-0123456789abcdef"
WARMUP_ROUNDS = 10


def run(rounds: int) -> dict[str, dict[str, float]]:
    with start_emulator(CCE_POLICY) as emulator:
        token = emulator.state.issuer.mint(canonical_json({"nonce": NONCE}))

        def verify(cache) -> None:
            verify_maa_token(token, issuer=emulator.issuer, expected_hostdata=emulator.hostdata, nonce=NONCE,
                             jwks_cache=cache)

        warm_cache = maa_jwks_cache()
        samples: dict[str, list[float]] = {"warm JWKS cache": [], "cold JWKS cache": []}
        for index in range(WARMUP_ROUNDS + rounds):
            for name in samples:
                cache = warm_cache if name.startswith("warm") else maa_jwks_cache()
                started = time.perf_counter()
                verify(cache)
                if index >= WARMUP_ROUNDS:
                    samples[name].append(time.perf_counter() - started)
    return {name: latency_summary(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    for name, row in run(args.rounds).items():
        print(f"{name:>16}: p50 {row['p50']:.3f} ms  p99 {row['p99']:.3f} ms  mean {row['mean']:.3f} ms (n={row['n']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
