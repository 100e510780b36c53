"""Waiting in a test for what the hub does in the background."""

import asyncio
import time


async def eventually(check, timeout_s: float = 20, interval_s: float = 0.05):
    """The first truthy result of `check()` within the time, else a failed assertion."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(interval_s)
