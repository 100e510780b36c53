"""A TCP proxy on 127.0.0.1 that can be cut and restored: the broker "goes down" for one process
under test while the shared RabbitMQ keeps running for everybody else.

It runs its own event loop in a thread, so it keeps forwarding while a test blocks (subprocess
waits, `time.sleep`) or runs on another loop.
"""

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

from yarl import URL

CONTROL_TIMEOUT_S = 5.0


class TcpProxy:
    """Forwards `127.0.0.1:<port>` to `target_host:target_port`.

    `cut()` drops every open connection (both sides, abruptly) and stops listening, so new
    connections are refused. `freeze()` keeps connections open but silently drops every byte, a
    network partition without resets. `restore()` drops whatever a freeze left (its streams are
    torn) and listens again on the same port.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host, self.target_port = target_host, target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._frozen = False
        self._connections: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._thread.start()
        self.restore()

    @classmethod
    def to_url(cls, url: str) -> "TcpProxy":
        """A proxy in front of the host and port of an AMQP (or any) URL."""
        parsed = URL(url)
        assert parsed.host and parsed.port
        return cls(parsed.host, parsed.port)

    def url_through(self, url: str, **query: str) -> str:
        """`url` with its host and port replaced by this proxy's, plus extra query parameters."""
        return str(URL(url).with_host("127.0.0.1").with_port(self.port).update_query(query))

    def cut(self) -> None:
        self._call(self._cut())

    def freeze(self) -> None:
        self._frozen = True

    def restore(self) -> None:
        if self._frozen:
            self._call(self._cut())
            self._frozen = False
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CONTROL_TIMEOUT_S)
        self._loop.close()

    def __enter__(self) -> "TcpProxy":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CONTROL_TIMEOUT_S)

    async def _listen(self) -> None:
        if self._server is None:
            # The first time the OS picks the port; afterwards the same one, so clients that
            # remember the address (a reconnecting AMQP client) find it again.
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )
            self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        upstream_w: asyncio.StreamWriter | None = None
        pipes: list[asyncio.Task[None]] = []
        try:
            upstream_r, upstream_w = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            pipes = [
                asyncio.create_task(self._pipe(client_r, upstream_w)),
                asyncio.create_task(self._pipe(upstream_r, client_w)),
            ]
            # Either side closing ends the whole connection, as it would between real peers.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for pipe in pipes:
                pipe.cancel()
            # abort(), not close(): a cut is a dead network, not a polite goodbye.
            client_w.transport.abort()
            if upstream_w is not None:
                upstream_w.transport.abort()
            self._connections.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if not self._frozen:
                    writer.write(data)
                    await writer.drain()
        except OSError:
            pass
