"""asyncio helpers."""

from __future__ import annotations

import asyncio


async def within(awaitable, timeout_s: float | None):
    """`asyncio.wait_for` that never swallows a cancellation: on 3.11, wait_for returns the
    result when the inner future completes as the outer task is cancelled, and the task
    then never stops (seen as an agent that ignored SIGTERM). Raises TimeoutError."""
    async with asyncio.timeout(timeout_s):
        return await awaitable
