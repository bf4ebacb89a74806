"""Delivering notices: a webhook POST or a file in a drop folder, per ISP, retried with backoff.

Due notices are claimed with FOR UPDATE SKIP LOCKED, so several nodes can work the outbox without
delivering one notice twice; the receiving side also gets an Idempotency-Key header (and drop-folder
files are named by it) so a delivery repeated after an unclear failure is recognisable as a repeat.
A notice's body is rendered when it is first claimed (ledger/notice_render.py) and stored, so every
attempt sends the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from tracker_watch import SOFTWARE, log, metrics
from tracker_watch.config import NoticeSettings
from tracker_watch.ledger.notice_render import render_notices

_log = log.get("tracker_watch.notices")

_NOTICE = """
    SELECT n.id, n.kind, n.idempotency_key, n.xml, n.json, n.attempts, i.name AS isp, i.webhook_url, i.drop_dir,
           i.format, s.level
    FROM notices n JOIN isps i ON i.name = n.isp JOIN strikes s ON s.id = n.strike_id
"""
_DUE = _NOTICE + """
    WHERE n.state = 'pending' AND n.next_attempt_at <= now()
    ORDER BY n.next_attempt_at, n.id LIMIT $1
    FOR UPDATE OF n SKIP LOCKED
"""


@dataclass
class DeliveryReport:
    delivered: int = 0
    retried: int = 0
    failed: int = 0


class Outbox:
    def __init__(self, pool: Any, settings: NoticeSettings, window_s: int = 86400) -> None:
        self.pool = pool
        self.settings = settings
        self.window_s = window_s  # evidence.incident_window_s: rendering looks up clients within the window
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def deliver_due(self, limit: int = 20) -> DeliveryReport:
        """Deliver up to `limit` due notices, each in its own short transaction."""
        report = DeliveryReport()
        for _ in range(limit):
            if not await self._deliver_one(report):
                break
        return report

    async def _deliver_one(self, report: DeliveryReport) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            for n in await conn.fetch(_DUE, 1):
                if n["xml"] is None and not (n := await self._render(conn, n)):
                    return True
                try:
                    await self._deliver(n)
                except Exception as exc:  # any failure: retry later, keep the reason
                    attempts = n["attempts"] + 1
                    final = attempts >= self.settings.max_attempts
                    delay = min(self.settings.retry_base_s * 2 ** (attempts - 1), self.settings.retry_max_s)
                    await conn.execute(
                        "UPDATE notices SET attempts = $2, state = $3, last_error = $4, "
                        "next_attempt_at = now() + $5::interval WHERE id = $1",
                        n["id"], attempts, "failed" if final else "pending", f"{type(exc).__name__}: {exc}"[:500],
                        timedelta(seconds=delay))
                    _log.warning("notice_delivery_failed", notice=n["id"], isp=n["isp"], attempt=attempts,
                                 final=final, error=str(exc)[:200])
                    metrics.NOTICE_DELIVERY_FAILURES.labels(final=str(final).lower()).inc()
                    report.failed += final
                    report.retried += not final
                else:
                    await conn.execute("UPDATE notices SET state = 'delivered', delivered_at = now(), "
                                       "attempts = attempts + 1, last_error = NULL WHERE id = $1", n["id"])
                    _log.info("notice_delivered", notice=n["id"], isp=n["isp"])
                    metrics.NOTICES_DELIVERED.inc()
                    report.delivered += 1
                return True
        return False

    async def _render(self, conn: Any, n: Any) -> Any:
        """Render a claimed notice's body (kept: a retry sends the same bytes); None when it cannot be yet
        (a rebuild is re-attributing its evidence), and then it waits a little without counting an attempt."""
        if await render_notices(conn, self.settings, self.window_s, [n["id"]]):
            return await conn.fetchrow(_NOTICE + " WHERE n.id = $1", n["id"])  # locked by this transaction
        await conn.execute("UPDATE notices SET next_attempt_at = now() + interval '5 seconds' WHERE id = $1", n["id"])
        return None

    async def _deliver(self, n: Any) -> None:
        body, media = (n["xml"], "application/xml") if n["format"] == "xml" else (n["json"], "application/json")
        if n["webhook_url"]:
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout_s))
            headers = {"Content-Type": f"{media}; charset=utf-8", "Idempotency-Key": n["idempotency_key"],
                       "User-Agent": SOFTWARE, "X-Strike-Level": str(n["level"]),
                       "X-Notice-Kind": n["kind"]}
            async with self._http.post(n["webhook_url"], data=body.encode(), headers=headers) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"webhook answered HTTP {resp.status}")
        if n["drop_dir"]:
            _drop(Path(n["drop_dir"]), n["idempotency_key"], {"xml": n["xml"], "json": n["json"]},
                  int(self.settings.drop_file_mode, 8))


def _drop(folder: Path, key: str, bodies: dict[str, str], mode: int = 0o640) -> None:
    """Write each file under a temporary name and rename it: readers never see a half-written notice.
    mkstemp makes it 0600 whatever the umask; `mode` (notices.drop_file_mode) lets the ISP's pickup read it."""
    folder.mkdir(parents=True, exist_ok=True)
    for ext, body in bodies.items():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, folder / f"{key}.{ext}")
