"""The Runs queue without its tab: runs wait their turn and train one at a time, each in its own
process; cancelling drops the waiting ones and stops the running one (which is saved)."""

from __future__ import annotations

from test_runs import tiny_spec

from detr_core.train.trainer import StepEvent
from explorer.run_queue import RunQueue


def test_the_queue_trains_its_runs_one_at_a_time_without_a_widget(qtbot, tmp_path):
    queue = RunQueue(str(tmp_path))
    ended, steps = [], []

    def on_ended(record, failure, cancelled) -> None:
        ended.append((record, failure, cancelled))
        queue.start_next()

    queue.ended.connect(on_ended)
    queue.event.connect(lambda e: steps.append(e.step) if isinstance(e, StepEvent) else None)
    queue.add([tiny_spec("first"), tiny_spec("second")])
    assert queue.start_next().name == "first"
    assert queue.start_next() is None and [s.name for s in queue.pending] == ["second"]  # one at a time
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=120000)
    assert [(r.name, r.status, f, c) for r, f, c in ended] == [("first", "completed", "", False),
                                                               ("second", "completed", "", False)]
    assert steps == [1, 2, 3, 1, 2, 3]
    assert queue.wait(20000) and not queue.busy and queue.start_next() is None


def test_cancel_drops_the_waiting_runs_and_stops_the_running_one(qtbot, tmp_path):
    queue = RunQueue(str(tmp_path))
    ended, steps = [], []
    queue.ended.connect(lambda *outcome: ended.append(outcome))
    queue.event.connect(lambda e: steps.append(e.step) if isinstance(e, StepEvent) else None)
    queue.add([tiny_spec("long", steps=100_000), tiny_spec("never")])
    queue.start_next()
    qtbot.waitUntil(lambda: len(steps) > 0, timeout=60000)
    queue.cancel()
    assert queue.pending == []
    qtbot.waitUntil(lambda: len(ended) == 1, timeout=60000)
    assert ended == [(None, "", True)] and queue.wait(20000) and queue.start_next() is None
