"""HTTP tracker requests under the address policy: whole replies up to a bound, redirects checked hop by hop.

Three ways a hostile tracker could reach what it should not, closed here:
  * a host name that resolves to an internal address — `PolicyResolver` drops forbidden addresses from
    every resolution aiohttp makes, so a name that later resolves elsewhere (DNS rebinding) is caught at
    connect time too;
  * a literal address in the URL or in a redirect — aiohttp never asks the resolver about those, so
    `check_literal_host` checks every hop before it is requested;
  * a redirect to anywhere — followed by hand, at most MAX_REDIRECTS, each hop a valid http(s) tracker URL.
A reply arrives in as many TCP segments (or chunks) as the tracker likes; it is read to the end, never
past MAX_REPLY_BYTES.
"""

from __future__ import annotations

import errno
import socket
import urllib.parse
from collections.abc import Callable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tracker_watch.domain import tracker_proto as tp
from tracker_watch.domain.trackers import TrackerUrlError, clean_tracker_url, literal_ip, redact

MAX_REPLY_BYTES = 2 * 2**20
MAX_REDIRECTS = 2
_REDIRECTS = (301, 302, 303, 307, 308)


class PolicyResolver(AbstractResolver):
    """The default resolver, keeping only addresses the policy allows."""

    def __init__(self, allows: Callable[[str], bool]) -> None:
        self._allows = allows
        self._inner = aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._allows(r["host"])]
        if not allowed:
            # aiohttp reports strerror only: "Cannot connect to host h:p ssl:… [<strerror>]"
            raise OSError(errno.EACCES, f"{host} has no address the address policy allows")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def check_literal_host(url: str, allows: Callable[[str], bool]) -> None:
    """Refuse a URL whose host is an address the policy forbids (names are checked as they resolve)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    ip = literal_ip(host)
    if ip is not None and not allows(ip):
        raise tp.TrackerError(f"tracker {redact(url)!r}: the address policy forbids {ip}")


async def get_reply(http: aiohttp.ClientSession, url: str, allows: Callable[[str], bool]) -> bytes:
    """The body of a 200 reply to GET url, following at most MAX_REDIRECTS redirects the policy allows."""
    for _ in range(MAX_REDIRECTS + 1):
        check_literal_host(url, allows)
        async with http.get(url, allow_redirects=False) as resp:
            if resp.status in _REDIRECTS:
                url = _redirect_target(url, resp.headers.get("Location", ""))
                continue
            if resp.status != 200:
                raise tp.TrackerError(f"HTTP {resp.status}")
            return await read_bounded(resp)
    raise tp.TrackerError(f"more than {MAX_REDIRECTS} redirects")


def _redirect_target(url: str, location: str) -> str:
    if not location:
        raise tp.TrackerError("redirect without a Location")
    try:
        target = clean_tracker_url(urllib.parse.urljoin(url, location))
    except (TrackerUrlError, ValueError) as exc:
        raise tp.TrackerError(f"redirect refused: {exc}") from None
    if not target.startswith(("http://", "https://")):
        raise tp.TrackerError(f"redirect to {redact(target)!r} refused: not http(s)")
    return target


async def read_bounded(resp: aiohttp.ClientResponse, limit: int = MAX_REPLY_BYTES) -> bytes:
    """The whole body, however it is segmented or chunked; TrackerError beyond `limit` bytes."""
    if resp.content_length is not None and resp.content_length > limit:
        raise tp.TrackerError(f"reply larger than {limit // 2**20} MiB")
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise tp.TrackerError(f"reply larger than {limit // 2**20} MiB")
    return bytes(body)
