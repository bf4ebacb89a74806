"""A TCP proxy in front of PostgreSQL that a test can take down and bring back (test equipment)."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def upstream_of(dsn: str) -> tuple[Opener, str]:
    """How to reach the server of `dsn`, and the same DSN pointed at 127.0.0.1:{port} (filled in later)."""
    url = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qs(url.query)
    port = url.port or int(query.get("port", ["5432"])[0])
    user = url.username or "postgres"
    database = url.path.lstrip("/") or "postgres"
    if "host" in query and query["host"][0].startswith("/"):  # the embedded server: a Unix socket
        path = f"{query['host'][0]}/.s.PGSQL.{port}"

        async def open_unix() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_unix_connection(path)
        opener: Opener = open_unix
    else:
        host = url.hostname or "127.0.0.1"

        async def open_tcp() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(host, port)
        opener = open_tcp
    return opener, f"postgresql://{user}@127.0.0.1:{{port}}/{database}"


@contextlib.asynccontextmanager
async def serving(upstream_dsn: str) -> AsyncIterator[PgProxy]:
    """A proxy that is up, and taken down at the end."""
    p = PgProxy(upstream_dsn)
    await p.up()
    try:
        yield p
    finally:
        await p.down()


class PgProxy:
    def __init__(self, upstream_dsn: str) -> None:
        self._open, self._template = upstream_of(upstream_dsn)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def dsn(self) -> str:
        return self._template.format(port=self.port)

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Refuse new connections and cut every open one, as a crashed server or a dead network would."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await self._open()
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.transport.abort()
