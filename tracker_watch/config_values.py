"""Conversion and checking of one setting's value, kept apart from the settings themselves (config.py).

A value comes from TOML (already typed) or from the environment (`EnvText`, converted here). It is checked
against its field's metadata: numbers are finite and within the field's `min` … `max`, which every numeric
setting declares (the ranges the daemon, PostgreSQL and libtorrent actually hold: libtorrent's settings
and most columns are 32-bit, `asyncio.sleep(nan)` never returns, `timedelta` and PostgreSQL timestamps end
somewhere); text holds no control characters, is at most MAX_TEXT characters and matches the field's
`pattern` in full; lists hold at most MAX_ITEMS such strings. Anything else raises ConfigError, whose
message is one line naming the key.
"""

from __future__ import annotations

import ipaddress
import math
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

MAX_TEXT = 4096
MAX_ITEMS = 1024
# C0 and C1 controls (a trailing newline, a NUL in a path) and lone surrogates (undecodable bytes of an
# environment variable, which Python keeps as surrogate escapes)
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,80}")
_SHOWN = 80
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message (one line) names the key."""


class EnvText(str):
    """A value that came from the environment, so it is text to be converted."""


def show(value: Any) -> str:
    """A value as an error message quotes it: one short line, never raising (huge integers, odd text)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    try:
        text = repr(str(value) if isinstance(value, EnvText) else value)  # repr escapes control characters
    except (ValueError, RecursionError):  # an integer too long to print, nested inside a list
        return f"a {type(value).__name__}"
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def name(text: Any) -> str:
    """A section or key name as given, quoted only when it is not a plain identifier."""
    return text if isinstance(text, str) and _PLAIN_NAME.fullmatch(text) else show(text)


def range_text(meta: Mapping[str, Any]) -> str | None:
    """'<min> … <max>' of a numeric setting, as the example configuration prints it."""
    if "min" not in meta or "max" not in meta:
        return None
    return f"{_number_text(meta['min'])} … {_number_text(meta['max'])}"


def _number_text(v: int | float) -> str:
    return f"{v:_}" if abs(v) >= 10_000 else repr(v)


def convert(key: str, typ: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    """The checked value of setting `key` (annotated `typ`, metadata `meta`), or ConfigError."""
    if isinstance(value, EnvText):
        value = _from_env(key, typ, value)
    origin = typing.get_origin(typ)
    if origin is Literal:
        choices = typing.get_args(typ)
        if not isinstance(value, str) or value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(repr, choices))}, got {show(value)}")
        return str(value)
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {show(value)}")
        if len(value) > MAX_ITEMS:
            raise ConfigError(f"{key}: at most {MAX_ITEMS} entries, got {len(value)}")
        return [_text(key, v) for v in value]
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {show(value)}")
        return value
    if typ is int or typ is float:
        return _number(key, typ, value, meta)
    if typ is Path or typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {show(value)}")
        text = _text(key, value)
        if (pattern := meta.get("pattern")) and not re.fullmatch(pattern, text):
            raise ConfigError(f"{key}: {show(text)} does not match {pattern}")
        return Path(text) if typ is Path else text
    raise ConfigError(f"{key}: unsupported type {typ!r}")  # pragma: no cover


def _text(key: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise ConfigError(f"{key}: at most {MAX_TEXT} characters, got {len(value)}")
    if m := _UNSAFE.search(value):
        raise ConfigError(f"{key}: control character {show(m.group())} at position {m.start()} in {show(value)}")
    return str(value)


def _from_env(key: str, typ: Any, value: EnvText) -> Any:
    """Environment text as the value TOML would have given (checks come after, the same for both)."""
    text = _text(key, value)
    if typing.get_origin(typ) is list:
        return [v.strip() for v in text.split(",") if v.strip()]
    if typ is bool:
        if text.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"{key}: expected true or false, got {show(text)}")
        return text.lower() in _TRUE
    if typ is int or typ is float:
        try:
            if not text.isascii():  # int() and float() would take other scripts' digits
                raise ValueError(text)
            return int(text) if typ is int else float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected {_kind(typ)}, got {show(text)}") from None
    return text


def _kind(typ: Any) -> str:
    return "an integer" if typ is int else "a number"


def _number(key: str, typ: type[Any], value: Any, meta: Mapping[str, Any]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (typ is int and not isinstance(value, int)):
        raise ConfigError(f"{key}: expected {_kind(typ)}, got {show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {show(value)}")
    # compared before conversion: float() of a huge TOML integer would overflow
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{key}: must be at least {_number_text(meta['min'])}, got {show(value)}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{key}: must be at most {_number_text(meta['max'])}, got {show(value)}")
    return typ(value)


def doc(text: str, **checks: Any) -> dict[str, Any]:
    """A setting's field metadata: its documentation (the example file's comment) and its checks."""
    return {"doc": text, **checks}


def parse_endpoint(key: str, text: str, host_names: bool = False) -> tuple[str, int]:
    """Parse 'ip:port', '[v6]:port' (or 'host:port' when host_names) into (host, port)."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})", text.strip())
    if not m:
        raise ConfigError(f"{key}: {show(text)} is not host:port")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{key}: port {port} out of range in {show(text)}")
    if not host_names:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{key}: {show(host)} is not an IP address") from None
    return host, port
