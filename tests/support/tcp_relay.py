"""A TCP relay on 127.0.0.1: forwards bytes both ways without touching TLS, and keeps a copy of all of them.

It stands for the host that owns the network: it can read and route every
byte, but holds no key. ``upstream`` can be switched (a restart behind the same
address) and ``drop_connections`` forces clients onto new connections.
"""

from __future__ import annotations

import socket
import threading

CHUNK = 65536


class TcpRelay:
    """Relays every connection to ``upstream`` (``(host, port)``); ``captured`` holds all relayed bytes.

    Example:
        with TcpRelay(("127.0.0.1", server.port)) as relay:
            ...  # connect to relay.port; later: relay.upstream = other; relay.drop_connections()
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._captured = bytearray()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def captured(self) -> bytes:
        with self._lock:
            return bytes(self._captured)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(CHUNK):
                with self._lock:
                    self._captured += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def drop_connections(self) -> None:
        """Cut every relayed connection, so clients must connect again."""
        with self._lock:
            sockets, self._open = self._open, []
        for end in sockets:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def __enter__(self) -> TcpRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.drop_connections()
        self._thread.join(timeout=5)
