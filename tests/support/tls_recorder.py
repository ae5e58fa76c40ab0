"""A TLS server on 127.0.0.1 that records every application byte it receives and answers one HTTP 200.

It is how the tests see *when* a client's pin refuses a peer: a refusal inside
the handshake leaves the recorder with a completed (or aborted) handshake and
no bytes at all.
"""

from __future__ import annotations

import socket
import ssl
import threading

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
READ_TIMEOUT_S = 5.0


class RecordingTlsServer:
    """Serves ``context`` on a free loopback port; ``received`` holds the bytes of each connection.

    Example:
        with RecordingTlsServer(TlsChannel.generate().ssl_context) as server:
            httpx2.get(server.url, verify=...)
            assert server.received == [b"GET / HTTP/1.1..."]
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.received: list[bytes] = []
        self.connections = 0
        self._recorded = threading.Condition()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._handle(raw)

    def _handle(self, raw: socket.socket) -> None:
        data = b""
        try:
            raw.settimeout(READ_TIMEOUT_S)
            with self._context.wrap_socket(raw, server_side=True) as tls:
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    tls.sendall(ANSWER)
        except (OSError, ssl.SSLError):
            pass
        finally:
            raw.close()
            with self._recorded:
                self.received.append(data)
                self._recorded.notify_all()

    def connections_since(self, start: int) -> list[bytes]:
        """What each connection after the first ``start`` ones sent, once every accepted one has ended."""
        with self._recorded:
            self._recorded.wait_for(lambda: len(self.received) >= self.connections, timeout=READ_TIMEOUT_S)
            return self.received[start:]

    def __enter__(self) -> RecordingTlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)
