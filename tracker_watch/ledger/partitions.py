"""The observations table's partitions (migration 0011): one per UTC day, created ahead; a month, once past
retention, rewritten into one partition.

  * `ensure` creates the days from yesterday to `ahead_days` ahead, and moves whatever the DEFAULT
    partition caught (a replay of old evidence, a clock far off) into partitions of its own days. It runs
    when the database starts and before every retention purge; until it runs, the DEFAULT partition
    takes the rows, so no insert ever fails for want of a partition.
  * `compact_month` replaces a month's daily partitions by one partition holding the same rows, with the
    personal fields of the rows retention is due to redact already blank: retention rewrites whole
    partitions instead of updating millions of rows in place (each update leaves a dead tuple and a new
    index entry behind). Every row stays, with its hashes, so the chain verifies as before.

Names carry the bounds: observations_pYYYYMMDD (a day) and observations_pYYYYMM (a compacted month).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from tracker_watch.ledger.db import Conn

AHEAD_DAYS = 7
_LOCK = "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.observations_partitions'))"
_NAME = re.compile(r"^observations_p(\d{4})(\d{2})(\d{2})?$")
_CHILDREN = """
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'observations'::regclass
"""


def day_name(day: date) -> str:
    return f"observations_p{day:%Y%m%d}"


def month_name(month: date) -> str:
    return f"observations_p{month:%Y%m}"


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


async def partitions(conn: Conn) -> tuple[set[date], set[date]]:
    """(days with a partition of their own, first days of compacted months)."""
    days, months = set(), set()
    for r in await conn.fetch(_CHILDREN):
        if m := _NAME.match(r["relname"]):
            if m[3]:
                days.add(date(int(m[1]), int(m[2]), int(m[3])))
            else:
                months.add(date(int(m[1]), int(m[2]), 1))
    return days, months


def _covered(day: date, days: set[date], months: set[date]) -> bool:
    return day in days or day.replace(day=1) in months


async def ensure(conn: Conn, now: datetime | None = None, ahead_days: int = AHEAD_DAYS) -> list[str]:
    """Create the missing day partitions around `now` and empty the DEFAULT partition into its days;
    returns the partitions created."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    async with conn.transaction():
        await conn.execute(_LOCK)  # nodes starting together must not race to create one day twice
        days, months = await partitions(conn)
        created = await _empty_default(conn, days, months)
        for n in range(-1, ahead_days + 1):
            day = today + timedelta(days=n)
            if not _covered(day, days, months):
                await _add_day(conn, day)
                days.add(day)
                created.append(day_name(day))
        return created


async def _add_day(conn: Conn, day: date) -> None:
    await conn.execute("SELECT observations_add_partition($1, $2, $3)", day_name(day), _start(day),
                       _start(day + timedelta(days=1)))


async def _empty_default(conn: Conn, days: set[date], months: set[date]) -> list[str]:
    """Rows the DEFAULT partition holds, moved into partitions of their days (created for them): detach
    it, attach a fresh one, copy the rows through the parent, drop the old one, in one transaction."""
    caught = [r["day"] for r in await conn.fetch(
        "SELECT DISTINCT (observed_at AT TIME ZONE 'UTC')::date AS day FROM observations_default ORDER BY 1")]
    if not caught:
        return []
    await conn.execute("ALTER TABLE observations DETACH PARTITION observations_default")
    await conn.execute("ALTER TABLE observations_default RENAME TO observations_default_moving")
    await conn.execute("CREATE TABLE observations_default PARTITION OF observations DEFAULT")
    await conn.execute("CREATE TRIGGER no_truncate BEFORE TRUNCATE ON observations_default "
                       "FOR EACH STATEMENT EXECUTE FUNCTION reject_change()")
    created = []
    for day in caught:
        if not _covered(day, days, months):
            await _add_day(conn, day)
            days.add(day)
            created.append(day_name(day))
    await conn.execute("INSERT INTO observations SELECT * FROM observations_default_moving")
    await conn.execute("DROP TABLE observations_default_moving")
    return created


async def compactable(conn: Conn, horizon: datetime) -> list[date]:
    """Months that still have day partitions and end at or before `horizon`."""
    days, _ = await partitions(conn)
    return sorted({d.replace(day=1) for d in days if _start(_next_month(d.replace(day=1))) <= horizon})


async def compact_month(conn: Conn, month: date, select_rows: str) -> int:
    """Replace the month's day partitions by one partition of the rows `select_rows` gives (a SELECT over
    `observations o` with the table's columns in order, for `o.observed_at` in [$1, $2)). Run inside the
    caller's transaction; returns how many rows were rewritten."""
    days, _ = await partitions(conn)
    dailies = sorted(day_name(d) for d in days if d.replace(day=1) == month)
    lo, hi, name = _start(month), _start(_next_month(month)), month_name(month)
    await conn.execute(_LOCK)
    for daily in dailies:  # a late replay into these days waits (and is retried by the writer if dropped)
        await conn.execute(f'LOCK TABLE "{daily}" IN SHARE MODE')
    await conn.execute(f'CREATE TABLE "{name}" (LIKE observations INCLUDING DEFAULTS INCLUDING CONSTRAINTS '
                       'INCLUDING STORAGE)')
    status = await conn.execute(f'INSERT INTO "{name}" {select_rows}', lo, hi)
    await _copy_indexes(conn, name)
    await conn.execute(f'ALTER TABLE "{name}" ADD CONSTRAINT bounds CHECK (observed_at >= \'{lo.isoformat()}\' '
                       f'AND observed_at < \'{hi.isoformat()}\')')  # spares ATTACH its validating scan
    for daily in dailies:
        await conn.execute(f'ALTER TABLE observations DETACH PARTITION "{daily}"')
        await conn.execute(f'DROP TABLE "{daily}"')
    await conn.execute(f"ALTER TABLE observations ATTACH PARTITION \"{name}\" FOR VALUES FROM ('{lo.isoformat()}') "
                       f"TO ('{hi.isoformat()}')")
    await conn.execute(f'ALTER TABLE "{name}" DROP CONSTRAINT bounds')
    await conn.execute(f'CREATE TRIGGER no_truncate BEFORE TRUNCATE ON "{name}" FOR EACH STATEMENT '
                       'EXECUTE FUNCTION reject_change()')
    return int(status.split()[-1])


async def _copy_indexes(conn: Conn, name: str) -> None:
    """The parent's indexes built on the new table before it is attached, so ATTACH adopts them instead of
    building them while it holds the parent's lock (the primary key as a constraint, as ATTACH requires)."""
    for r in await conn.fetch("SELECT i.indisprimary, pg_get_indexdef(i.indexrelid) AS def, "
                              "pg_get_constraintdef(c.oid) AS constraint_def FROM pg_index i "
                              "LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype = 'p' "
                              "WHERE i.indrelid = 'observations'::regclass"):
        if r["indisprimary"]:
            await conn.execute(f'ALTER TABLE "{name}" ADD {r["constraint_def"]}')
        else:
            await conn.execute(re.sub(r"INDEX \S+ ON ONLY \S+", f'INDEX ON "{name}"', r["def"], count=1))
