"""Training threads chosen from the free cores and re-chosen as the load changes.

The tuner is driven here by a simulated machine (step times as measured on 2 cores: 0.08 s on
two threads alone, 0.12 s on one thread, 0.24 s on two threads beside a busy process with passive
waiting), so its decisions are checked exactly; the CPU meter is checked against a real busy
process."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from detr_core.device import usable_cores
from detr_core.train import threads as threads_module
from detr_core.train.threads import CpuMeter, ThreadTuner, free_cores, limit_threads


class Machine:
    """Two cores; ``loaded`` while another process keeps one of them busy."""

    def __init__(self, seed: int = 0) -> None:
        self.loaded = False
        self.now = 0.0
        self.rng = random.Random(seed)

    def step_seconds(self, threads: int) -> float:
        if threads == 1:
            base = 0.12
        else:
            base = 0.24 if self.loaded else 0.08
        return base * self.rng.uniform(0.9, 1.1)

    def clock(self) -> float:
        return self.now


class Meter:
    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def busy_elsewhere(self) -> float:
        return 1.0 if self.machine.loaded else 0.05


def run(tuner: ThreadTuner, machine: Machine, steps: int) -> list[int]:
    """Train ``steps`` simulated steps; the thread count of each."""
    counts = []
    for _ in range(steps):
        counts.append(tuner.count)
        seconds = machine.step_seconds(tuner.count)
        machine.now += seconds
        tuner.record(seconds)
    return counts


def tuner_for(machine: Machine, start: int = 2, meter: Meter | None = None) -> tuple[ThreadTuner, list[int]]:
    calls: list[int] = []
    tuner = ThreadTuner(start, 2, meter=meter, clock=machine.clock, set_threads=calls.append)
    return tuner, calls


@pytest.fixture(autouse=True)
def no_limit():
    limit_threads(None)
    yield
    limit_threads(None)


def test_an_idle_machine_keeps_every_core_and_never_tries_anything():
    machine = Machine()
    tuner, calls = tuner_for(machine, meter=Meter(machine))
    assert run(tuner, machine, 500) == [2] * 500
    assert calls == [2] and tuner.changes == 0


def test_a_busy_core_moves_training_to_one_thread_and_the_free_core_brings_the_second_back():
    machine = Machine(seed=1)
    tuner, calls = tuner_for(machine, meter=Meter(machine))
    run(tuner, machine, 100)
    machine.loaded = True
    loaded = run(tuner, machine, 400)
    assert 1 in loaded[:15]  # the slowdown is noticed within a window of steps
    assert loaded[15:] == [1] * 385  # and it stays on one thread: no trial while the core is busy
    assert "other work is using the CPU" in tuner.reason
    machine.loaded = False
    freed = run(tuner, machine, 400)  # about 48 s of steps
    after = freed.index(2)
    assert after * 0.12 <= ThreadTuner.PROBE_AFTER + 2  # a core came free: tried within the probe time
    assert freed[after:] == [2] * (400 - after)
    assert tuner.reason == "2 threads (a core came free)"


def test_under_load_most_of_the_time_is_spent_on_the_faster_count():
    """Loaded from the start (the run began on two threads all the same): the mean step is within
    10% of the one-thread speed, also without a meter (tries on a timer that backs off)."""
    for meter in (True, False):
        machine = Machine(seed=2)
        machine.loaded = True
        tuner, _ = tuner_for(machine, meter=Meter(machine) if meter else None)
        t0 = machine.now
        run(tuner, machine, 5000)  # about ten minutes
        mean = (machine.now - t0) / 5000
        assert mean <= 1.1 * 0.12, (meter, mean)
        assert tuner.count == 1


def test_without_a_meter_the_tries_of_one_more_thread_back_off():
    machine = Machine(seed=3)
    machine.loaded = True
    tuner, calls = tuner_for(machine, start=1)
    run(tuner, machine, 5000)  # about ten minutes
    tries = calls.count(2)
    assert 3 <= tries <= 10  # 10 s, 20 s, 40 s, 80 s, 160 s, 160 s ... apart, not every 10 s (60)


def test_a_limit_from_outside_caps_the_run_and_lifting_it_gives_the_threads_back():
    machine = Machine(seed=4)
    fixed_calls: list[int] = []
    fixed = ThreadTuner(2, 2, fixed=True, clock=machine.clock, set_threads=fixed_calls.append)
    tuned, _ = tuner_for(machine, meter=Meter(machine))
    limit_threads(1)
    for tuner in (fixed, tuned):
        tuner.follow_limit()
        assert tuner.count == 1 and tuner.reason == "1 thread (sharing the CPU with another run)"
    assert run(tuned, machine, 200) == [1] * 200  # no trial of two while limited
    limit_threads(None)
    fixed.follow_limit()
    assert fixed.count == 2 and fixed.reason == "2 threads (as asked)"
    assert fixed_calls == [2, 1, 2]
    assert 2 in run(tuned, machine, 40)


def test_a_fixed_count_is_kept_under_load():
    machine = Machine(seed=5)
    machine.loaded = True
    tuner = ThreadTuner(2, 2, fixed=True, clock=machine.clock, set_threads=lambda n: None)
    assert run(tuner, machine, 300) == [2] * 300


def test_a_run_names_its_threads_and_why():
    import torch

    cpu = torch.device("cpu")
    asked = ThreadTuner.for_run(1, cpu, tune=True)
    assert (asked.count, asked.reason, asked.fixed) == (1, "1 thread (as asked)", True)
    too_many = ThreadTuner.for_run(999, cpu)
    assert too_many.count == usable_cores() and "asked for 999" in too_many.reason
    distributed = ThreadTuner.for_run(None, cpu, tune=False)
    assert distributed.fixed and "distributed" in distributed.reason
    auto = ThreadTuner.for_run(None, cpu)
    assert not auto.fixed and 1 <= auto.count <= usable_cores()
    assert auto.reason.startswith(f"{auto.count} thread")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_the_meter_sees_a_busy_process_and_the_run_starts_on_the_free_cores():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meter = CpuMeter()
        meter.sample(0.3)  # let the busy process get going
        assert meter.sample(0.5) >= 0.6
        if usable_cores() > 1:
            free, why = free_cores(meter, 0.5)
            assert free <= usable_cores() - 1
            assert "busy with other work" in why
    finally:
        busy.kill()
        busy.wait()


def test_the_meter_says_nothing_where_the_system_does_not_tell(tmp_path):
    meter = CpuMeter(str(tmp_path / "no-such-file"))
    assert meter.busy_elsewhere() is None
    assert threads_module.free_cores(meter, 0.0)[0] == usable_cores()


def test_a_cgroup_cpu_quota_limits_the_usable_cores(tmp_path):
    from detr_core.device import cpu_quota

    v2, v1, none = tmp_path / "v2", tmp_path / "v1", tmp_path / "none"
    (v2 / "ci" / "job").mkdir(parents=True)
    (v2 / "ci" / "cpu.max").write_text("150000 100000\n")  # a parent's limit holds below it too
    (v2 / "ci" / "job" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "v2.cgroup").write_text("0::/ci/job\n")
    assert cpu_quota(str(v2), str(tmp_path / "v2.cgroup")) == 1.5
    (v1 / "cpu,cpuacct" / "docker").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "docker" / "cpu.cfs_quota_us").write_text("50000\n")
    (v1 / "cpu,cpuacct" / "docker" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "v1.cgroup").write_text("4:memory:/docker\n3:cpu,cpuacct:/docker\n")
    assert cpu_quota(str(v1), str(tmp_path / "v1.cgroup")) == 0.5
    (none / "cpu").mkdir(parents=True)
    (none / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (none / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "none.cgroup").write_text("1:cpu:/\n0::/\n")
    assert cpu_quota(str(none), str(tmp_path / "none.cgroup")) is None
    assert cpu_quota(str(none), str(tmp_path / "missing")) is None
