"""Journey steps on their way to the event log, kept through a store outage.

The runtime records what happened to an event (`retried`, `parked`, ...) in the event log's
journey. A store that refuses writes (a full disk, a lock, a server away) must not make those
steps vanish, nor hold the message up: they are kept in order and written once it takes them
again, as the outbox relay does for follow-ups.
"""

import asyncio
import time
from collections import deque

from hookhub.logs import log
from hookhub_eventlog.store import EventLog, Step

# Journey steps a process keeps while the store refuses them; past that, new ones are dropped
# (counted, and said once per `DROPPED_REPORT_S`): a long outage must not eat the memory.
MAX_KEPT_STEPS = 10_000
DROPPED_REPORT_S = 60.0
# How long the kept steps wait between tries to write them (doubling up to the last), as long
# as the store refuses; and how long a stopping process still tries.
KEPT_RETRY_S = (0.5, 10.0)
KEPT_FLUSH_ON_STOP_S = 5.0


class Journeys:
    """The journey steps of one process on their way to the event log. A step the store refuses
    (a full disk, a lock, a server away) is kept, and so is every step after it, to keep their
    order; a task writes them, oldest first, as soon as the store takes them again, waiting
    longer between tries while it refuses, as the outbox relay does. At most `max_kept` are
    kept: what comes past that is dropped, counted, and said once per `DROPPED_REPORT_S`."""

    def __init__(self, journal: EventLog, max_kept: int = MAX_KEPT_STEPS) -> None:
        self._journal = journal
        self._max_kept = max_kept
        self._kept: deque[Step] = deque()
        self._writing: asyncio.Task[None] | None = None
        self._dropped = 0  # since it was last said
        self._dropped_said_at = 0.0

    async def record(self, step: Step) -> None:
        """Record `step` now, or keep it for later; never raises."""
        if not self._kept:
            try:
                await self._journal.record(step)
                return
            except Exception as error:
                log.warning("journey.kept", what=step.what, error=f"{type(error).__name__}")
        self._keep(step)

    def _keep(self, step: Step) -> None:
        if len(self._kept) >= self._max_kept:
            self._dropped += 1
            if (now := time.monotonic()) - self._dropped_said_at >= DROPPED_REPORT_S:
                log.error("journey.steps_dropped", dropped=self._dropped, kept=len(self._kept))
                self._dropped, self._dropped_said_at = 0, now
            return
        self._kept.append(step)
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_kept(), name="journey-steps")

    async def _write_kept(self) -> None:
        wait_s, longest_s = KEPT_RETRY_S
        while self._kept:
            try:
                await self._journal.record(self._kept[0])
            except Exception:  # still refused: the next try waits longer
                await asyncio.sleep(wait_s)
                wait_s = min(wait_s * 2, longest_s)
                continue
            self._kept.popleft()
            wait_s = KEPT_RETRY_S[0]
        log.info("journey.kept_written")

    async def close(self) -> None:
        """Give the kept steps a last few seconds to be written; say what is lost."""
        if self._writing is not None and not self._writing.done():
            done, _ = await asyncio.wait({self._writing}, timeout=KEPT_FLUSH_ON_STOP_S)
            if not done:
                self._writing.cancel()
        if lost := len(self._kept) + self._dropped:
            log.error("journey.steps_dropped", dropped=lost, kept=0)
            self._kept.clear()
            self._dropped = 0
