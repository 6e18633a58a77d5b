"""How many CPU threads training uses: chosen from the cores actually free, and re-checked as it runs.

A busy laptop is every user's laptop. torch's intra-op threads work in lock step: every operation
ends at a barrier where each thread waits for the slowest. When another process (a browser tab, a
video call, a second training) holds one of the cores, the thread that shares that core runs a
fraction of the time, and every operation waits for it. On 2 cores with one busy process, two
threads ran the ``fast`` preset 25 times slower than alone, one thread at close to its idle speed.

So a run picks its threads from the cores free to it (its affinity mask, its cgroup's CPU quota,
minus what other processes keep busy) and a :class:`ThreadTuner` keeps checking while it trains:

- when the recent steps run much slower than the settled speed, it tries one thread fewer for a
  few steps and keeps whichever was faster;
- while it runs on fewer threads than it may use, it now and then tries one more, when a core
  looks free (or on a timer where the system does not say), and keeps it only if it is faster.

How threads wait at the barrier matters less than how many there are. Measured on 2 cores
(``fast`` preset, two threads): alone, libgomp's default (spin a little, then sleep) ran a step in
88 ms and ``OMP_WAIT_POLICY=PASSIVE`` in 124 ms; beside a busy process 332 and 300 ms, against
134 ms on one thread. So the wait policy is left as it is, and the thread count does the work.

An explicit thread count (``TrainConfig.threads``, ``--threads``) is kept as it is: the user asked
for it. A limit (:func:`limit_threads`) caps the count from outside, as the window does when two of its
runs train at once.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import torch

from detr_core.device import usable_cores


class CpuMeter:
    """How many cores other processes kept busy since the last reading, from ``/proc/stat``.

    Reading it costs a file read, no waiting: each call measures the time since the previous one.
    Counts only the cores this process may run on; ``None`` where the system does not tell
    (no ``/proc``)."""

    def __init__(self, stat_path: str = "/proc/stat") -> None:
        self._path = Path(stat_path)
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last = self._read()

    def _read(self) -> tuple[float, float, float] | None:
        """(wall seconds, busy core-seconds of our cores, this process's CPU seconds), or None."""
        try:
            lines = self._path.read_text().splitlines()
        except OSError:
            return None
        try:
            cores = os.sched_getaffinity(0)
        except (AttributeError, OSError):
            cores = None
        busy = 0
        for line in lines:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            if cores is not None and int(name[3:]) not in cores:
                continue
            fields = [int(v) for v in rest.split()]
            # user nice system idle iowait irq softirq steal (guest time is inside user already)
            busy += sum(fields[:8]) - fields[3] - fields[4]
        own = sum(os.times()[:2])  # user + system seconds of all this process's threads
        return time.monotonic(), busy / self._ticks, own

    def busy_elsewhere(self) -> float | None:
        """Cores kept busy by other processes since the last call (0 when they were idle)."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] - last[0] <= 0:
            return None
        others = (now[1] - last[1]) - (now[2] - last[2])
        return max(0.0, others / (now[0] - last[0]))

    def sample(self, seconds: float = 0.2) -> float | None:
        """Cores busy elsewhere over the next ``seconds`` (sleeps that long)."""
        self.busy_elsewhere()
        time.sleep(seconds)
        return self.busy_elsewhere()


def free_cores(meter: CpuMeter | None = None, seconds: float = 0.1) -> tuple[int, str]:
    """(cores free to this process now, why): usable cores (affinity, cgroup quota) less the ones
    other processes keep busy, measured over ``seconds``; at least 1."""
    usable = usable_cores()
    busy = (meter or CpuMeter()).sample(seconds)
    if busy is None:
        return usable, f"{usable} usable core{'s' if usable > 1 else ''}"
    taken = min(usable - 1, int(busy + 0.35))  # a core counts as taken from about two thirds busy
    free = max(1, usable - taken)
    if taken <= 0:
        return free, f"{usable} core{'s' if usable > 1 else ''} free"
    return free, f"{taken} of {usable} cores busy with other work"


_limit: int | None = None  # this process's cap on training threads, set from outside


def limit_threads(most: int | None) -> None:
    """Cap the threads of this process's training runs (None: no cap); any thread may call it,
    the run applies it before its next step. The window caps each of its runs while several
    train at once."""
    global _limit
    _limit = None if most is None else max(1, int(most))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


class ThreadTuner:
    """Picks and re-picks torch's intra-op thread count from the speed of the steps themselves.

    Call :meth:`record` after each training step with its wall time, on the training thread
    (OpenMP's thread count is per thread). It calls ``set_threads`` when it changes the count;
    ``count`` and ``reason`` say what it uses and why."""

    WINDOW = 6  # steps whose median is the current speed
    SLOWER = 1.6  # the current speed this much slower than the settled one: try fewer threads
    TRIAL = 5  # steps of a trial (the first is not counted: caches and thread start-up)
    BETTER = 0.9  # a trial is kept when its median is at most this fraction of the other's
    PROBE_AFTER = 10.0  # seconds between tries of one thread more; doubles while they fail
    PROBE_MAX = 160.0

    def __init__(self, start: int, most: int, reason: str = "", fixed: bool = False,
                 meter: CpuMeter | None = None, clock: Callable[[], float] = time.monotonic,
                 set_threads: Callable[[int], None] = torch.set_num_threads) -> None:
        self.usable = max(1, most)  # what the run may use
        self.most = self.usable  # less while a limit is set from outside (limit_threads)
        self.count = max(1, min(start, self.most))
        self.asked = self.count  # a fixed run's own count, back when a limit is lifted
        self.reason = reason or plural(self.count, "thread")
        self.fixed = fixed
        self.meter = meter
        self.clock = clock
        self._set = set_threads
        self._recent: deque[float] = deque(maxlen=self.WINDOW)
        self._settled: float | None = None  # seconds a step at ``count`` when it was last judged
        self._trial: tuple[int, float, str] | None = None  # (count to go back to, its speed, why)
        self._trial_times: list[float] = []
        self._probe_every = self.PROBE_AFTER
        self._next_probe = clock() + self._probe_every
        self.changes = 0
        self._set(self.count)
        self.follow_limit()

    @classmethod
    def for_run(cls, threads: int | None, device: torch.device, tune: bool = True) -> ThreadTuner:
        """The tuner of a run: ``threads`` fixed when given (limited to the usable cores), else
        chosen from the free cores and tuned on the CPU. Without ``tune`` (distributed processes
        wait for each other at every step, so a process's own step time says little about its
        threads) torch's count is kept."""
        usable = usable_cores()
        if threads:
            count = min(threads, usable)
            why = "as asked" if count == threads else f"asked for {threads}, {usable} usable cores"
            return cls(count, count, f"{plural(count, 'thread')} ({why})", fixed=True)
        if device.type != "cpu" or not tune:
            count = min(torch.get_num_threads(), usable)
            why = f"the model runs on {device.type}" if device.type != "cpu" else "fixed in a distributed run"
            return cls(count, count, f"{plural(count, 'CPU thread')} ({why})", fixed=True)
        meter = CpuMeter()
        free, why = free_cores(meter)
        return cls(free, usable, f"{plural(free, 'thread')} ({why})", meter=meter)

    def follow_limit(self) -> None:
        """Apply a changed :func:`limit_threads` (set from another thread, applied on this one)."""
        most = min(self.usable, _limit or self.usable)
        if most == self.most:
            return
        self.most = most
        sharing = most < self.usable
        if self.fixed:
            count = min(self.asked, most)
            if count != self.count or sharing:
                self._change(count, f"{plural(count, 'thread')} "
                             + ("(sharing the CPU with another run)" if sharing else "(as asked)"))
        elif self.count > most:
            self._change(most, f"{plural(most, 'thread')} (sharing the CPU with another run)")
        else:
            self._next_probe = self.clock()  # a raised limit is worth a try soon
        self._trial = None
        self._settled = None

    def _change(self, count: int, reason: str) -> None:
        self.reason = reason
        if count != self.count:
            self.count = count
            self.changes += 1
            self._set(count)
        self._recent.clear()

    def _start_trial(self, count: int, why: str) -> None:
        """Run ``count`` threads for :attr:`TRIAL` steps, then keep them or go back."""
        self._trial = (self.count, statistics.median(self._recent), why)
        self._trial_times = []
        self._change(count, self.reason)

    def record(self, seconds: float) -> bool:
        """Note one step's wall time; True when the thread count changed."""
        before = self.count
        self.follow_limit()
        if self.fixed or not math.isfinite(seconds) or seconds <= 0:
            return self.count != before
        if self._trial is not None:
            self._trial_times.append(seconds)
            if len(self._trial_times) >= self.TRIAL:
                self._end_trial()
            return self.count != before
        self._recent.append(seconds)
        if len(self._recent) < self.WINDOW:
            return False
        now = statistics.median(self._recent)
        if self._settled is None or now < self._settled:
            self._settled = now
        elif now > self.SLOWER * self._settled:
            if self.count > 1:
                self._start_trial(self.count - 1, f"{self.count} threads slowed down {now / self._settled:.1f}x")
                return True
            self._settled = now  # one thread already: this is the speed there is
        if self.clock() >= self._next_probe:
            return self._probe()
        return self.count != before

    def _probe(self) -> bool:
        """Now and then try one thread more (a core looks free) or fewer (other work looks busy);
        where the system does not say, try either on a timer that backs off while they fail."""
        busy = self.meter.busy_elsewhere() if self.meter is not None else None
        free = None if busy is None else self.usable - busy
        if self.count < self.most and (free is None or free >= self.count + 0.6):
            self._start_trial(self.count + 1, "a core came free")
            return True
        if self.count > 1 and (free is None or free <= self.count - 0.6):
            self._start_trial(self.count - 1, "fewer ran faster")
            return True
        self._next_probe = self.clock() + self._probe_every
        return False

    def _end_trial(self) -> None:
        assert self._trial is not None
        back, before, why = self._trial
        tried = statistics.median(self._trial_times[1:])
        self._trial = None
        if tried <= self.BETTER * before:
            why = why if self.count > back else f"other work is using the CPU; {why}"
            self._change(self.count, f"{plural(self.count, 'thread')} ({why})")
            self._settled = tried
            self._probe_every = self.PROBE_AFTER
        else:
            self._change(back, self.reason)
            self._settled = before
            self._probe_every = min(self.PROBE_MAX, self._probe_every * 2)
        self._next_probe = self.clock() + self._probe_every
