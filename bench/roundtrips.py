"""Count Postgres round trips at the protocol level: a loopback TCP relay that counts client flights.

A round trip is one turn of the conversation: the client sends one or more messages, then waits
for the server's answer. The relay counts every client→server send that follows server→client
data (or opens the connection), which is exactly the number of times the client had to wait.

    async with RoundTripCounter("127.0.0.1", 5432) as relay:
        dsn = relay.rewrite(dsn)     # point the client at the relay
        ...; print(relay.flights)
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit


class RoundTripCounter:
    """Relays 127.0.0.1:<port> → the real server and counts client flights.

    Args:
        host: The real server's host.
        port: The real server's port.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.base_events.Server | None = None
        self.flights = 0
        self.port = 0

    async def __aenter__(self) -> "RoundTripCounter":
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._server.close()

    def rewrite(self, dsn: str) -> str:
        """`dsn` with its host and port replaced by the relay's."""
        parts = urlsplit(dsn)
        credentials = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{self.port}"))

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        waiting = [True]  # the client's next send starts a new flight

        async def pump(reader, writer, from_client: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if from_client and waiting[0]:
                        self.flights += 1
                        waiting[0] = False
                    elif not from_client:
                        waiting[0] = True
                    writer.write(data)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                writer.close()

        try:
            await asyncio.gather(pump(client_reader, server_writer, True), pump(server_reader, client_writer, False))
        except asyncio.CancelledError:  # the relay is closing
            pass
