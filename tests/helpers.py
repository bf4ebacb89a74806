"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


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
