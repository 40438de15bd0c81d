"""Interval jobs on the monotonic clock: the agent's probes, device polls and self-metrics.

Each job runs every `interval_s` seconds on a grid of its own (its first run when the caller says: the
agent picks a random moment in the first interval, up to 10 s, so that probes and clinics do not fire
in step), each later run a random `jitter_s` late at most. A run never overlaps the previous one: a run that outlasts its interval takes the next slot of the
grid after it ends, and the slots it missed are not made up for in a burst.

Why not APScheduler (the agent used it until 2026-11-30): it times jobs on the wall clock. A router that
boots without a real-time clock starts at its last saved time and is set right by NTP later; a step
backwards of an hour left every job waiting an hour, and each step forwards was a misfire. The
monotonic clock does not step. And its import, with the plugin lookup and process pool it pulls in,
was about 4 MiB of an agent that must fit a router (docs/agent.md, footprint); the agent needs a tenth
of what it does.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


def next_slot(first: float, interval_s: float, now: float) -> float:
    """The first slot of the grid `first + k * interval_s` (k >= 0) that is not before `now`."""
    if now <= first:
        return first
    return first + math.ceil((now - first) / interval_s - 1e-9) * interval_s


@dataclass
class _Job:
    job_id: str
    func: Callable[..., Any]
    args: list[Any]
    interval_s: float
    jitter_s: float
    first: float
    task: asyncio.Task[None] | None = None
    running: bool = False
    removed: bool = False


class Scheduler:
    """The agent's jobs, in the running event loop. `now` is the loop's clock (monotonic)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self.jobs: dict[str, _Job] = {}
        self.started = False

    def add(self, job_id: str, func: Callable[..., Any], interval_s: float, args: list[Any] | None = None,
            jitter_s: float = 0.0, first_in_s: float = 0.0) -> None:
        """Run `func(*args)` (a coroutine function or a plain one) every `interval_s`, first in
        `first_in_s`. A job of the same id is replaced."""
        if interval_s <= 0:
            raise ValueError(f"job {job_id}: interval_s must be positive, not {interval_s}")
        self.remove(job_id)
        now = asyncio.get_running_loop().time()
        job = _Job(job_id, func, list(args or []), interval_s, max(0.0, jitter_s), now + max(0.0, first_in_s))
        self.jobs[job_id] = job
        if self.started:
            job.task = asyncio.create_task(self._loop(job), name=f"job {job_id}")

    def remove(self, job_id: str) -> None:
        """No more runs of the job; a run under way ends on its own (it is not cut short)."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            return
        job.removed = True
        if job.task is not None and not job.running:
            job.task.cancel()

    def ids(self) -> list[str]:
        return list(self.jobs)

    def start(self) -> None:
        self.started = True
        for job in self.jobs.values():
            if job.task is None:
                job.task = asyncio.create_task(self._loop(job), name=f"job {job.job_id}")

    def shutdown(self) -> None:
        """No more runs; runs under way are left to the caller (the agent cancels and awaits them)."""
        for job_id in list(self.jobs):
            self.remove(job_id)
        self.started = False

    async def _loop(self, job: _Job) -> None:
        loop = asyncio.get_running_loop()
        due = job.first
        while not job.removed:
            # The first run comes at `first_in_s` exactly (the caller spread it already); later ones are late
            # by up to `jitter_s`.
            late = self.rng.uniform(0, job.jitter_s) if job.jitter_s and due > job.first else 0.0
            await asyncio.sleep(max(0.0, due + late - loop.time()))
            if job.removed:
                return
            job.running = True
            try:
                result = job.func(*job.args)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s failed; it runs again at its next slot", job.job_id)
            finally:
                job.running = False
            # The next slot of the grid after this one, and not before now: a run that overran its
            # interval skips the slots it covered instead of running them back to back.
            due = next_slot(job.first, job.interval_s, max(loop.time(), due + job.interval_s))
