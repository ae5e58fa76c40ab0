"""Runs an ASGI app with uvicorn on a loopback port in a background thread (dev stand-ins, tests)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from app.attestation.channel import TlsChannel

STARTUP_TIMEOUT_S = 10.0


class ThreadedServer:
    """A uvicorn server on 127.0.0.1 in a daemon thread; `port=0` picks a free port.

    Example:
        with ThreadedServer(app) as server:
            httpx.get(f"{server.url}/status")
    """

    def __init__(self, app, *, host: str = "127.0.0.1", port: int = 0, tls: TlsChannel | None = None) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        tls_options = {"ssl_context_factory": tls.uvicorn_ssl_context_factory} if tls else {}
        # Stand-ins have no lifespan; "on" left a lifespan task that a forced stop cancels with a traceback.
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, **tls_options)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def start(self) -> "ThreadedServer":
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"stand-in on {self.url} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._server.force_exit = True  # a stand-in owes nobody a graceful drain
        self._thread.join(timeout=5)
        self._socket.close()

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
