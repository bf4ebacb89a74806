"""What a spool directory holds at start-up, checked: its segments, stray names, and whether the cursor
agrees with the segments on disk. Damage is described, never repaired here, and nothing is deleted."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEGMENT_NAME = re.compile(r"[0-9]{12}\.seg")
MAX_SEGMENT = 10**12 - 1  # twelve digits in the name


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:012d}.seg"


def scan(directory: Path) -> tuple[dict[int, int], int, list[str]]:
    """Segment number → size, the highest number any `*.seg` name takes (a new segment must not collide
    with a stray directory), and what was wrong."""
    segments: dict[int, int] = {}
    highest = 0
    problems: list[str] = []
    for path in sorted(directory.iterdir()):
        if not path.name.endswith(".seg"):
            continue
        if not SEGMENT_NAME.fullmatch(path.name):
            problems.append(f"{path.name!r} is not a segment name; left alone")
            continue
        number = int(path.name[:-4])
        highest = max(highest, number)
        if not path.is_file():
            problems.append(f"{path.name!r} is not a regular file; left alone")
            continue
        segments[number] = path.stat().st_size
    return segments, highest, problems


def read_cursor(directory: Path) -> Position | str:
    """The saved position, (0, 0) when there is none yet, or what is wrong with the file."""
    try:
        parts = (directory / "cursor").read_bytes().split()
    except FileNotFoundError:
        return Position(0, 0)
    except OSError as exc:
        return f"cursor cannot be read ({exc.strerror})"
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return f"cursor {b' '.join(parts)[:40]!r} is not two numbers"
    return Position(int(parts[0]), int(parts[1]))


def check_cursor(cursor: Position | str, segments: dict[int, int]) -> tuple[Position, str | None]:
    """The cursor, or the start of the spool and why. A commit deletes the segments before the cursor
    before it writes it, so a cursor past a segment still on disk, or past its own segment's end, is damage
    as much as an unreadable one; replaying everything there is costs time, never data (replay is
    idempotent), while trusting it would skip or delete records."""
    first = min(segments, default=0)
    if isinstance(cursor, Position):
        if not segments:  # nothing to replay or skip: start over (a new segment must fit twelve digits)
            return Position(0, 0), None
        if cursor.segment > MAX_SEGMENT:
            cursor = f"cursor {cursor.segment} {cursor.offset} is out of range"
        elif cursor.segment > first:
            cursor = f"cursor {cursor.segment} {cursor.offset} is past segment {first}, still on disk"
        elif cursor.offset > segments.get(cursor.segment, cursor.offset):
            cursor = f"cursor {cursor.segment} {cursor.offset} is past the end of its segment"
        else:
            return cursor, None
    return Position(first, 0), f"{cursor}; replaying every segment from {first}"
