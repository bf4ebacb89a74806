"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
from _collections_abc import dict_items, dict_keys, dict_values
from collections.abc import Awaitable, Callable, Iterator
from typing import Any


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, step: float = 0.1) -> None:
    """Poll a condition until it holds; a deadline, not a speed claim (tests never assert timings)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


async def wait_for_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 30.0, step: float = 0.2) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)


async def run_process(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str]:
    """Run a command without blocking the event loop; returns (exit code, stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


class Walks(dict[Any, Any]):
    """A dict that counts walks over all of its entries (iteration, items/keys/values): O(len) work each, so a
    test can say that an operation touched only its own entries without timing it."""

    walks = 0

    def __iter__(self) -> Iterator[Any]:
        self.walks += 1
        return super().__iter__()

    def items(self) -> dict_items[Any, Any]:
        self.walks += 1
        return super().items()

    def keys(self) -> dict_keys[Any, Any]:
        self.walks += 1
        return super().keys()

    def values(self) -> dict_values[Any, Any]:
        self.walks += 1
        return super().values()
