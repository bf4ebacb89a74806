"""Tracker URLs from magnets, .torrent files and settings: validated, bounded, credentials removed. Pure.

A tracker URL comes from whoever made the magnet or .torrent file. Before it is stored or announced to,
it must be something we can announce to (http/https/udp, a host, a usable port — udp needs one), carry
nothing that could split a request line or a log line (CR, LF, other control characters, spaces), and
stay short. Credentials (`user:pass@`) are removed: we never keep or log them. Secrets in the query
(passkeys) stay in the URL, since the tracker needs them, but `redact` hides them from logs.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable

MAX_URL_LENGTH = 2048
MAX_TRACKERS = 50  # per target: enough for every real multi-tracker torrent, not a fan-out to a thousand hosts
SCHEMES = ("http", "https", "udp")
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # control characters and spaces, CR and LF among them
_SECRET_KEYS = re.compile(r"pass|key|token|auth|secret|sig|uid|session", re.IGNORECASE)


class TrackerUrlError(ValueError):
    """The text is not a tracker URL we will announce to; the message never contains credentials."""


def clean_tracker_url(url: str) -> str:
    """The URL as we keep it (credentials removed), or TrackerUrlError naming what is wrong."""
    if len(url) > MAX_URL_LENGTH:
        raise TrackerUrlError(f"tracker URL is longer than {MAX_URL_LENGTH} characters")
    if _UNSAFE.search(url):
        raise TrackerUrlError(f"tracker {redact(url)!r} contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise TrackerUrlError(f"tracker {redact(url)!r} has an invalid host or port") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES or not parts.hostname:
        raise TrackerUrlError(f"tracker {redact(url)!r} is not an http(s):// or udp:// URL")
    if port == 0 or (scheme == "udp" and port is None):
        raise TrackerUrlError(f"tracker {redact(url)!r} needs a port from 1 to 65535")
    _check_host(parts.hostname, url)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return urllib.parse.urlunsplit(parts._replace(scheme=scheme))


def _check_host(host: str, url: str) -> None:
    if host.startswith("[") or ":" in host:  # urlsplit strips the brackets of an IPv6 literal
        try:
            ipaddress.IPv6Address(host.strip("[]"))
        except ValueError:
            raise TrackerUrlError(f"tracker {redact(url)!r} has an invalid IPv6 address") from None
        return
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?", x)
                                  for x in labels):
        raise TrackerUrlError(f"tracker {redact(url)!r} has an invalid host name")


def clean_tracker_list(urls: Iterable[str], strict: bool) -> tuple[str, ...]:
    """Distinct cleaned URLs, in order, at most MAX_TRACKERS. strict: a bad one raises; else it is dropped."""
    out: dict[str, None] = {}
    for url in urls:
        if not url:
            continue
        try:
            out[clean_tracker_url(url)] = None
        except TrackerUrlError:
            if strict:
                raise
            continue
        if len(out) >= MAX_TRACKERS:
            break
    return tuple(out)


def tracker_host(url: str) -> str | None:
    """The host of a cleaned tracker URL, without IPv6 brackets."""
    return urllib.parse.urlsplit(url).hostname


def literal_ip(host: str) -> str | None:
    """The host as an address when it is an IP literal (IPv4 or IPv6), else None (a name to resolve)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def redact(url: str) -> str:
    """The URL for a log line: credentials and secret-looking query values replaced by '***'."""
    text = _UNSAFE.sub("?", url[:300])
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", text)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    path = re.sub(r"/[A-Za-z0-9]{24,}(?=/|$)", "/***", parts.path)  # passkeys in the path (/<key>/announce)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


def _redact_pair(pair: str) -> str:
    name, eq, _ = pair.partition("=")
    return f"{name}=***" if eq and _SECRET_KEYS.search(name) else pair
