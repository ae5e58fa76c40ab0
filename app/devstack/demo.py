"""`make demo`: the whole trust chain offline, then the refusals: a man in the middle, and a changed measurement.

Every step runs the real CLI in its own process (emulator, seal, serve, verify),
exactly as an operator would; only the endpoints are local. NOT A TEE.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from app.devstack.postgres import LocalPostgres, PostgresUnavailable, free_port
from app.devstack.standins import GitHubStandIn, WebhookSink
from app.devstack.threaded import ThreadedServer
from app.devstack.tls_proxy import TlsTerminatingProxy

DEMO_DIR = Path(".mcp-tee") / "demo"
IMAGE_V1 = b'package policy\napi_version := "0.10.0"\n# demo image v1 (sha256:1111...)\n'
IMAGE_TAMPERED = b'package policy\napi_version := "0.10.0"\n# demo image with a backdoor (sha256:6666...)\n'
READY_TIMEOUT_S = 30.0
BEARER_ENV = "MCP_DEMO_BEARER"
NOT_PROVABLE_OFFLINE = (
    "that real AMD SEV-SNP hardware measured the container (the emulator signs whatever it is told)",
    "that Azure Key Vault's release policy and MAA behave as the emulator does",
    "that the host cannot read memory: that is the hardware's guarantee, not the protocol's",
)


def step(number: int, text: str) -> None:
    # Bold only on a terminal: piped or captured output stays plain text.
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}[{number}] {text}{plain}", flush=True)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        values[name] = value.strip("'")
    return values


def start_emulator(state: Path, port: int, policy: bytes) -> tuple[subprocess.Popen, dict[str, str]]:
    (state / "cce-policy.b64").write_text(base64.b64encode(policy).decode())
    env_file = state / "emulator.env"
    env_file.unlink(missing_ok=True)
    with open(state / "emulator.log", "ab") as log:  # its banner and logs; the demo prints what matters
        process = subprocess.Popen(cli("emulator", "--port", str(port), "--cce-policy",
                                       str(state / "cce-policy.b64"), "--state-dir", str(state)),
                                   stdout=log, stderr=log)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the emulator did not start")
        time.sleep(0.1)
    return process, read_env_file(env_file)


def seal_secrets(emulator_env: dict[str, str], values: dict[str, str]) -> None:
    env = {**os.environ, **{k: v for k, v in emulator_env.items() if k.startswith("IDENTITY_")}}
    for name, value in values.items():
        subprocess.run(
            cli("seal", "--vault", f"https://{emulator_env['AKV_ENDPOINT']}", "--key", emulator_env["SKR_KEY_NAME"],
                "--name", name, "--ca-file", emulator_env["AKV_CA_FILE"],
                "--identity-client-id", emulator_env["IDENTITY_CLIENT_ID"]),
            input=value.encode(), env=env, check=True, stdout=subprocess.DEVNULL,
        )
        print(f"    sealed {name} (value read from stdin, never argv)")


def server_env(emulator_env: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in ("GITHUB_TOKEN", "DB_CONNECTION_STRING", "WEBHOOK_URL")}
    pinned = {k: v for k, v in emulator_env.items() if k != "EXPECTED_HOSTDATA"}
    return {**base, **pinned, **extra, "MCP_TEE_MODE": "tee", "SKR_RELEASE_DEADLINE_S": "5"}


def wait_ready(process: subprocess.Popen, url: str) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            # Readiness only (self-signed TEE key, nothing sent but the probe); the agent pins, this does not.
            if httpx.get(f"{url}/healthz", timeout=0.5, verify=False).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(0.2)
    return False


def verify(mcp_url: str, emulator_env: dict[str, str], user_token: str, bearer: str, *, show: bool) -> dict:
    """The verifying agent: checks and pins, seals the user's token, searches with it, and proves isolation.

    Its JSON report is rendered here: one line per check when `show`, else only the first failure.
    """
    from app.attestation.verifier import check_label

    result = subprocess.run(
        cli("agent", mcp_url, "--trust-dev-issuer", emulator_env["MAA_ISSUER"],
            "--expect-hostdata", emulator_env["EXPECTED_HOSTDATA"], "--github-token-stdin", "--check-isolation",
            "--call", "github_search_issues", "--arguments", '{"query": "login"}', "--auth-token-env", BEARER_ENV,
            "--json"),
        input=user_token.encode(), env={**os.environ, BEARER_ENV: bearer}, stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the dev-issuer warning; the demo said NOT A TEE up front
    )
    report = {**json.loads(result.stdout or b"{}"), "exit_code": result.returncode}
    checks = report.get("checks", [])
    for check in checks if show else [c for c in checks if not c["ok"]][:1]:
        print(f"    {'✓' if check['ok'] else '✗'} {check_label(check['name'])}"
              + (f": {check['detail']}" if check["detail"] else ""))
    if show:
        issues = (report.get("call_result") or {}).get("issues") or []
        print(f"    github_search_issues answered with {len(issues)} issues"
              + (f", e.g. #{issues[0].get('number')} {issues[0].get('title')!r}" if issues else ""))
    print(f"    agent verdict: {report.get('result', 'no report').upper()} (exit code {result.returncode})")
    return report


def summary(report: dict, used_user_token: bool, channel_held: bool, refused: bool) -> None:
    """What this run proved, what it saw refused, and what no offline run can prove."""
    checks = report.get("checks", [])
    proven = [f"the server's attestation verified check by check ({len(checks)} checks), its hostdata pinned by "
              "the key release policy and its TLS key by the attestation" if report.get("exit_code") == 0 else None,
              "the user's GitHub token reached GitHub only through the attested session" if used_user_token else None]
    refused_lines = ["the sealed token replayed into a second session did not open there"
                     if any(c["name"] == "isolation" and c["ok"] for c in checks) else None,
                     "a TLS-terminating man in the middle got neither the bearer token nor credentials"
                     if channel_held else None,
                     "a changed measurement got no key, so no secrets and no server (exit code 3)" if refused else None]
    print("\nSummary")
    sections = (("proven", proven), ("refused", refused_lines), ("not provable offline", NOT_PROVABLE_OFFLINE))
    for title, lines in sections:
        for line in lines:
            if line:
                print(f"  {title:<21} {line}")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m app.devstack.demo", description=__doc__.split("\n\n")[0],
                            epilog="Run through `make demo`. State and logs go to .mcp-tee/demo/.").parse_args(argv)
    print("NOT A TEE: this demo runs the attestation emulator on loopback. It shows the protocol, not the hardware.")
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    emulator_dir = DEMO_DIR / "emulator"
    emulator_dir.mkdir(parents=True)
    emulator_port, server_port = free_port(), free_port()
    server_url = f"https://127.0.0.1:{server_port}"
    mcp_url = f"{server_url}/mcp"
    cleanup: list = []
    try:
        step(1, "Local upstreams: Postgres (demo schema, read-only role), GitHub and webhook stand-ins")
        baseline_token, user_token = f"ghp_demo{secrets.token_hex(16)}", f"ghp_user{secrets.token_hex(16)}"
        github_standin = GitHubStandIn(tokens={baseline_token, user_token})
        github = ThreadedServer(github_standin.app).start()
        hook_path = f"/hooks/{secrets.token_urlsafe(12)}"
        sink = ThreadedServer(WebhookSink(path=hook_path, echo=True).app).start()
        cleanup += [github.stop, sink.stop]
        values = {"github-token": baseline_token, "webhook-url": f"{sink.url}{hook_path}"}
        try:
            postgres = LocalPostgres(DEMO_DIR / "pg")
            postgres.start()
            cleanup.append(postgres.stop)
            values["db-connection-string"] = postgres.provision_demo(reader_password=secrets.token_urlsafe(18))
        except PostgresUnavailable as exc:
            print(f"    no Postgres ({exc}); query_database will stay disabled")

        step(2, "Start the attestation emulator with CCE policy 'image v1' (the key's release policy pins its hostdata)")
        emulator, emulator_env = start_emulator(emulator_dir, emulator_port, IMAGE_V1)
        cleanup.append(emulator.terminate)
        print(f"    hostdata = {emulator_env['EXPECTED_HOSTDATA']}")

        step(3, "Seal the baseline secrets to the release key and store them as Key Vault secrets")
        seal_secrets(emulator_env, values)

        step(4, "Start the server in TEE mode: key release -> read sealed secrets -> unseal in memory")
        extra = {"GITHUB_API_URL": github.url, "MCP_AUDIT_LOG": str(DEMO_DIR / "audit.jsonl")}
        # The server's log goes to a file: its expected warnings (the isolation check's refusal) would
        # otherwise print in the middle of the agent's report.
        with open(DEMO_DIR / "server.log", "ab") as log:
            server = subprocess.Popen(cli("serve", "--port", str(server_port)), env=server_env(emulator_env, extra),
                                      stdout=log, stderr=log)
        cleanup.append(server.terminate)
        print(f"    server log: {DEMO_DIR / 'server.log'}")
        if not wait_ready(server, server_url):
            raise SystemExit("the server did not start")

        step(5, "The agent verifies the attestation and pins the TLS key it binds, then sends its bearer token and "
                "seals a user's GitHub token to the attested session key")
        bearer = f"demo-bearer-{secrets.token_hex(16)}"
        report = verify(mcp_url, emulator_env, user_token, bearer, show=True)
        used_user_token = any(seen["token"] == user_token for seen in github_standin.requests)
        print(f"    GitHub stand-in saw the user's own token: {'yes' if used_user_token else 'NO'}")

        step(6, "Man in the middle: a TLS-terminating proxy with its own certificate forwards everything to the server")
        with TlsTerminatingProxy(server_url) as proxy:
            intercepted = verify(proxy.url, emulator_env, f"ghp_user{secrets.token_hex(16)}", bearer, show=False)
        leaked = proxy.saw_authorization or "provide_session_credentials" in proxy.tools_called
        print(f"    the proxy saw: {', '.join(request.path for request in proxy.seen) or 'nothing'}; "
              f"bearer token or credentials at the proxy: {'YES' if leaked else 'none'}")
        server.terminate()
        server.wait(timeout=15)
        emulator.terminate()
        emulator.wait(timeout=15)

        step(7, "Tamper: the emulator now measures a different image; the release policy still pins image v1")
        emulator, emulator_env = start_emulator(emulator_dir, emulator_port, IMAGE_TAMPERED)
        cleanup.append(emulator.terminate)
        print(f"    hostdata = {emulator_env['EXPECTED_HOSTDATA']} (changed)")
        refused = subprocess.run(cli("serve", "--port", str(server_port)), env=server_env(emulator_env, extra),
                                 timeout=60, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        reason = next((line for line in refused.stderr.splitlines() if "refused" in line), "").strip()
        print(f"    server exit code {refused.returncode}: "
              f"{'release refused, no secrets, no server' if refused.returncode == 3 else 'UNEXPECTED'}")
        if reason:
            print(f"    {reason}")
        channel_held = intercepted["exit_code"] != 0 and not leaked
        summary(report, used_user_token, channel_held, refused.returncode == 3)
        return 0 if report["exit_code"] == 0 and used_user_token and channel_held and refused.returncode == 3 else 1
    finally:
        for stop in reversed(cleanup):
            try:
                stop()
            except Exception:  # best effort: the demo is ending anyway
                pass


if __name__ == "__main__":
    sys.exit(main())
