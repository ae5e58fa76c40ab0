"""Runs an assembled server until it is stopped: logging, the bind rule, secrets, then uvicorn or stdio.

In TEE mode uvicorn serves HTTPS only, with the TLS key born in this process (`app.attestation.channel`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from typing import Mapping

from app.attestation.channel import TlsChannel
from app.config import ConfigError, Settings
from app.urls import is_loopback_host
from app.secrets.env import load_env_secrets
from app.secrets.tee_release import start_tee
from app.wire.tls_binding import TLS_SPKI_FIELD

logger = logging.getLogger("mcp_tee")

SHUTDOWN_GRACE_S = 5
# httpx logs request URLs (a webhook URL is a credential); the MCP SDK logs session ids, which
# are bearer-like handles, at INFO.
QUIET_LOGGERS = frozenset({"httpx", "httpcore", "azure.core.pipeline.policies.http_logging_policy",
                           "mcp.server.streamable_http", "mcp.server.streamable_http_manager"})


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("MCP_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)


def refuse_exposed_bind_without_auth(settings: Settings) -> None:
    """Fail closed: without inbound auth, only this machine may reach the tools."""
    if settings.transport == "streamable-http" and not is_loopback_host(settings.host) and settings.auth is None:
        raise ConfigError(
            f"refusing to listen on {settings.host}: inbound auth is not configured, so anyone who can reach "
            "the port could use every tool. Bind 127.0.0.1, or configure MCP_AUTH_ISSUER and MCP_AUTH_AUDIENCE."
        )


def _audit_destination(settings: Settings) -> str:
    blob = settings.audit_blob
    if blob is not None:
        return f"blob store {blob.account_url}/{blob.container}/{blob.prefix}/"
    if settings.audit_log == "-":
        # With stdio disabled in the CCE policy this output is dropped: production uses the blob sink.
        return "stdout (whoever reads the container's output reads it; production sets MCP_AUDIT_SINK=blob)"
    return f"file {settings.audit_log}"


async def serve(settings: Settings, env: Mapping[str, str]) -> int:
    """Load secrets, build the server and run it until it is stopped."""
    import uvicorn

    from app.server.assembly import assemble
    from app.server.http_limits import listener_options
    from app.server.mcp_app import MCP_PATH

    channel = None
    if settings.tee_mode:
        tee = await start_tee(env, require_secrets=settings.require_secrets)
        channel = TlsChannel.generate()  # the TLS key is born here, in the TEE, and never leaves memory
        server = assemble(settings, tee.secrets, audit_key=tee.audit_key, tee=tee, channel=channel)
    else:
        server = assemble(settings, load_env_secrets(env))
    try:
        for tool, reason in sorted(server.state.disabled.items()):
            logger.warning("tool %s is disabled: %s", tool, reason)
        logger.info("audit trail: %s", _audit_destination(settings))
        if settings.transport == "stdio":
            logger.info("stdio transport: one local user, no bearer token; every call runs as the local principal "
                        "with scopes %s", ", ".join(sorted(settings.local_scopes)))
            await server.mcp.run_async(transport="stdio", show_banner=False)
            return 0
        # TEE mode: HTTPS only, with the in-memory context; plain HTTP exists only outside a TEE.
        tls = {"ssl_context_factory": channel.uvicorn_ssl_context_factory} if channel else {}
        listener = bind_listener(settings.host, settings.port)
        logger.info("serving MCP on %s://%s:%d%s (mode %s, auth %s)", "https" if channel else "http", settings.host,
                    settings.port, MCP_PATH, settings.mode, "on" if settings.auth else "off: loopback only")
        if channel:
            logger.info("attested TLS channel: key sha256 %s (bound into every attestation as %s)",
                        channel.spki_sha256, TLS_SPKI_FIELD)
        config = uvicorn.Config(server.http_app(), host=settings.host, port=settings.port, log_level="warning",
                                lifespan="on", loop="asyncio", timeout_graceful_shutdown=SHUTDOWN_GRACE_S, **tls,
                                **listener_options(body_timeout_s=settings.request_body_timeout_s,
                                                   on_refusal=server.record_refusal))
        await _server_returning_on_signal(config).serve(sockets=[listener])
        return 0
    finally:
        await server.aclose()



def bind_listener(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything says "serving"; a busy port is a ConfigError, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}. Stop whatever uses the port, "
                          "or pass --port") from None
    listener.set_inheritable(True)
    return listener


def _server_returning_on_signal(config):
    """uvicorn's server, minus re-raising SIGINT/SIGTERM once it has drained.

    uvicorn re-raises the signal so that the default handler ends the process; by then the audit log
    is closed and only cleanup is left, which the re-raised signal turns into cancellation tracebacks
    (issue 14). Returning normally lets every `finally` run.
    """
    from app.server.http_limits import BoundedServer

    class Server(BoundedServer):
        @contextlib.contextmanager
        def capture_signals(self):
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    return Server(config)
