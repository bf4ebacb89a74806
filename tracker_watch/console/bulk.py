"""The bulk registration list: one target per line, as plain text or CSV.

A line is a magnet link or a v1/v2 hex infohash (registered under the work title given in the form), or
`work title,magnet-or-infohash` (CSV quoting allowed). Blank lines and lines starting with # are skipped,
as is a first line that is only a header (`work,target`). Every bad line is reported with its number; the
caller writes nothing unless every line is good.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass

from tracker_watch.domain.targets import TargetParseError, TargetSpec, parse_target

MAX_LINES = 10_000
_HEADER = {"work", "title", "target", "infohash", "magnet", "link"}
_TARGETISH = re.compile(r"^\s*(magnet:|[0-9a-fA-F]{40}\s*$|[0-9a-fA-F]{64}\s*$)")


@dataclass(frozen=True)
class LineError:
    line: int
    text: str
    detail: str


def parse_lines(text: str, default_work: str) -> tuple[list[tuple[TargetSpec, str]], list[LineError]]:
    """(spec, work title) per good line, and an error per bad line."""
    items: list[tuple[TargetSpec, str]] = []
    errors: list[LineError] = []
    lines = text.splitlines()
    for number, raw in enumerate(lines, start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#") or (number == 1 and _is_header(line)):
            continue
        if len(items) + len(errors) >= MAX_LINES:
            errors.append(LineError(number, line[:80], f"more than {MAX_LINES:,} targets; split the list"))
            break
        try:
            work, target = _split(line, default_work)
            items.append((parse_target(target), work))
        except (TargetParseError, ValueError) as exc:
            errors.append(LineError(number, line[:80], str(exc)))
    if not items and not errors:
        errors.append(LineError(0, "", "the list is empty: give one magnet link or infohash per line"))
    return items, errors


def _is_header(line: str) -> bool:
    fields = [f.strip().lower() for f in next(csv.reader([line]), [])]
    return bool(fields) and all(f in _HEADER for f in fields)


def _split(line: str, default_work: str) -> tuple[str, str]:
    if _TARGETISH.match(line):
        work, target = default_work, line
    else:
        fields = next(csv.reader([line], skipinitialspace=True), [])
        at = next((i for i, f in enumerate(fields) if i > 0 and _TARGETISH.match(f)), None)
        if at is None:
            raise ValueError("expected a magnet link or a 40/64-character hex infohash, optionally after "
                             "'work title,'")
        work, target = ",".join(fields[:at]).strip(), ",".join(fields[at:]).strip()
    if not work:
        raise ValueError("no work title: put one before a comma on this line, or in the form's title field")
    if len(work) > 500:
        raise ValueError("the work title is longer than 500 characters")
    return work, target
