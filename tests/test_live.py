"""Training in a child process (detr_core.train.live): the same weights as in-process training, the
controls work across the process boundary, and a dead or orphaned child is handled."""

import queue
from dataclasses import replace

import numpy as np
import torch

from detr_core.analysis.matching import (
    MatchingProbe,
    MatchingSnapshot,
    StabilityPoint,
    StabilityProbe,
)
from detr_core.config import DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.model.detr import DETR
from detr_core.train.live import LiveJob, LiveSession, TrainedState
from detr_core.train.trainer import StepEvent, TrainControl

SMALL = DETRConfig(
    backbone="tiny", tiny_width=8, tiny_stride=16, d_model=32, nheads=4, num_encoder_layers=1,
    num_decoder_layers=2, dim_feedforward=64, num_queries=6, num_classes=3, dropout=0.0,
    image_min_size=64, image_max_size=64,
)
DATA = ToyDataConfig(image_size=64, max_objects=3, noise=0.0)
TRAIN = TrainConfig(lr=1e-3, lr_backbone=1e-3, batch_size=2, steps=6, schedule="constant", seed=4, data=DATA,
                    threads=1, eval_every=0)


def _collect(session: LiveSession, on_message=None) -> list[tuple]:
    messages = []
    for message in session.messages():
        messages.append(message)
        if on_message is not None:
            on_message(message)
    return messages


def _steps(messages: list[tuple]) -> list[StepEvent]:
    return [e for m in messages if m[0] == "progress" for e in m[1]]


def test_a_run_in_a_child_process_gives_the_weights_of_a_run_in_this_one():
    image = np.full((64, 64, 3), 90, np.uint8)
    session = LiveSession(LiveJob(SMALL, TRAIN, preview_image=image))
    session.start()
    messages = _collect(session)
    kinds = [m[0] for m in messages]
    assert kinds[0] == "started" and kinds[-1] == "done" and "preview" in kinds
    assert messages[0][1]["parameters"] == sum(p.numel() for p in DETR(SMALL).parameters())
    assert [e.step for e in _steps(messages)] == list(range(1, 7))
    state: TrainedState = messages[-1][1]
    assert state.step == 6 and state.reason == "completed" and session.exitcode == 0

    sent: list[tuple] = []
    local = LiveJob(SMALL, TRAIN).run(lambda *m: sent.append(m), TrainControl())
    assert [e.step for e in _steps(sent)] == list(range(1, 7))
    for key, value in local.state_dict.items():
        torch.testing.assert_close(state.state_dict[key], value, rtol=0, atol=0, msg=key)
    model = state.build_model(SMALL)  # what the window receives
    assert not model.training
    assert [e.losses["loss"] for e in _steps(messages)] == [e.losses["loss"] for e in _steps(sent)]


def test_pause_single_steps_probes_and_stop_across_the_process_boundary():
    job = LiveJob(SMALL, replace(TRAIN, steps=10_000), start_paused=True)
    job.probes.append(("match", MatchingProbe(sample_index=2), 1000))
    job.probes.append(("stability", StabilityProbe(num_images=2), 1000))
    session = LiveSession(job)
    session.step_once()  # before the child exists: the command waits for it
    session.start()
    seen: list[tuple] = []

    def on_message(message):
        steps = _steps(seen)
        if message[0] == "progress" and steps[-1].step == 1:
            session.update_probe("match", sample_index=5)
            session.step_once()
        elif message[0] == "progress" and steps[-1].step == 2:
            session.stop()

    for message in session.messages():
        seen.append(message)
        on_message(message)
    assert [e.step for e in _steps(seen)] == [1, 2]  # paused between and after the single steps
    snapshots = [m[2] for m in seen if m[0] == "probed" and m[1] == "match"]
    assert all(isinstance(s, MatchingSnapshot) for s in snapshots)
    assert snapshots[0].step == 1 and snapshots[0].sample_index == 2
    assert snapshots[-1].step == 2 and snapshots[-1].sample_index == 5  # the update reached the child
    points = [m[2] for m in seen if m[0] == "probed" and m[1] == "stability" and m[2] is not None]
    assert [p.step for p in points] == [1, 2] and all(isinstance(p, StabilityPoint) for p in points)
    assert seen[-1][0] == "done" and seen[-1][1].reason == "stopped" and seen[-1][1].step == 2


def test_a_non_finite_loss_is_reported_and_the_run_still_hands_back_its_weights():
    loss = LossConfig()
    loss.weight_bbox = float("inf")  # set past validation (which refuses it): the loss is inf at step 1
    bad = replace(TRAIN, loss=loss)
    session = LiveSession(LiveJob(SMALL, bad))
    session.start()
    messages = _collect(session)
    failures = [m[1] for m in messages if m[0] == "failed"]
    assert len(failures) == 1 and "loss is inf at step 1" in failures[0]
    assert messages[-1][0] == "done" and messages[-1][1].reason == "error" and messages[-1][1].step == 0


def test_a_killed_child_becomes_a_failure_message():
    session = LiveSession(LiveJob(SMALL, replace(TRAIN, steps=100_000)))
    session.start()
    messages = _collect(session, lambda m: m[0] == "progress" and session.kill())
    assert messages[-1][0] == "failed" and "killed by signal" in messages[-1][1]
    assert not session.finished and not session.alive


def test_the_child_stops_when_the_parent_stops_listening():
    """Closing the command pipe (as when the parent dies) stops training; the run still ends
    cleanly with its weights."""
    session = LiveSession(LiveJob(SMALL, replace(TRAIN, steps=100_000)))
    session.start()
    # on the first progress the command forwarder closes its end of the pipe
    messages = _collect(session, lambda m: m[0] == "progress" and session._outbox.put(None))
    assert messages[-1][0] == "done" and messages[-1][1].reason == "stopped"
    assert session.exitcode == 0


def test_a_job_that_cannot_start_reports_why():
    bad = replace(SMALL, num_classes=5)  # the toy data has 3 classes
    session = LiveSession(LiveJob(bad, TRAIN))
    session.start()
    messages = _collect(session)
    assert [m[0] for m in messages] == ["failed"]
    assert "5 classes" in messages[0][1]
    assert session.exitcode == 0


def test_run_job_applies_commands_between_steps():
    """In-process use (no child): the preview image and probe updates come through the inbox."""
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    image = np.zeros((40, 50, 3), np.uint8)
    job = LiveJob(SMALL, replace(TRAIN, steps=2), preview_every=0.0)
    job.probes.append(("match", MatchingProbe(0), 1))
    inbox.put(("preview_image", image))
    inbox.put(("probe", "match", {"active": False}))
    sent: list[tuple] = []
    job.run(lambda *m: sent.append(m), TrainControl(), inbox)
    previews = [m[1] for m in sent if m[0] == "preview"]
    assert previews and previews[-1].image_size == (40, 50)
    assert [m[2] for m in sent if m[0] == "probed"][-1] is None  # deactivated


def test_unknown_commands_are_ignored():
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    inbox.put(("no such command", 1))
    sent: list[tuple] = []
    LiveJob(SMALL, replace(TRAIN, steps=1)).run(lambda *m: sent.append(m), TrainControl(), inbox)
    assert [e.step for e in _steps(sent)] == [1]


def _thread_counts(messages: list[tuple]) -> list[int]:
    """The thread counts a run reported, in order, each change once."""
    return [m[1] for m in messages if m[0] == "threads"]


def test_runs_at_the_same_time_share_the_threads(monkeypatch):
    """A second session halves the first one's threads before either oversubscribes the CPU,
    starts with its share from its first step, and hands the threads back when it ends; each
    says why it runs on the threads it has."""
    import threading
    import time

    monkeypatch.setattr(LiveSession, "cpu_budget", 2)
    first = LiveSession(LiveJob(SMALL, replace(TRAIN, steps=100_000, threads=2)))
    first.start()
    seen: list[tuple] = []
    reader = threading.Thread(target=lambda: seen.extend(first.messages()))
    reader.start()
    try:
        deadline = time.time() + 60
        while not _steps(list(seen)) and time.time() < deadline:
            time.sleep(0.05)
        assert _thread_counts(seen) == [2]
        mark = len(seen)
        second = LiveSession(LiveJob(SMALL, replace(TRAIN, steps=100_000, threads=2)))
        second.start()
        second_messages = second.messages()
        messages = []
        for message in second_messages:
            messages.append(message)
            if message[0] == "progress":
                break
        # the second runs until the first has taken its share: on a busy machine a second run of a
        # few steps could end before the first's next step, and then there was no sharing to see
        deadline = time.time() + 60
        while 1 not in _thread_counts(seen[mark:]) and time.time() < deadline:
            time.sleep(0.05)
        second.stop()
        messages += list(second_messages)
        assert _thread_counts(messages)[-1] == 1
        first_progress = next(i for i, m in enumerate(messages) if m[0] == "progress")
        assert any(m[0] == "threads" and m[1] == 1 for m in messages[:first_progress])
        assert ("threads", 1, "1 thread (sharing the CPU with another run)") in messages
        deadline = time.time() + 30
        while 2 not in _thread_counts(seen[mark:]) and time.time() < deadline:
            time.sleep(0.05)
        assert _thread_counts(seen[mark:]) == [1, 2]  # shared, then given back
        assert [m for m in seen[mark:] if m[0] == "threads"][-1] == ("threads", 2, "2 threads (as asked)")
    finally:
        first.stop()
        reader.join(30)
    assert seen[-1][0] == "done" and not LiveSession._running


def test_a_reader_that_stops_early_leaves_no_session_behind(monkeypatch):
    """Breaking out of messages() (which closes the generator) still cleans up: the session leaves
    the running ones, the other run gets its threads back, the command thread ends and the child
    is stopped and joined."""
    monkeypatch.setattr(LiveSession, "cpu_budget", 2)
    first = LiveSession(LiveJob(SMALL, replace(TRAIN, steps=100_000, threads=2)))
    first.start()
    second = LiveSession(LiveJob(SMALL, replace(TRAIN, steps=100_000, threads=2)))
    second.start()
    seen: list[tuple] = []
    first_messages = first.messages()
    try:
        assert LiveSession._running == [first, second]
        # the first run takes its share before the second ends: on a busy machine its first step
        # can come after the second has already ended, and then there was no sharing to see
        for message in first_messages:
            seen.append(message)
            if message[0] == "threads" and message[1] == 1:
                break
        for message in second.messages():
            if message[0] == "progress":
                break
        assert LiveSession._running == [first]
        assert not second.alive and second.exitcode is not None
        assert second._commands_thread is not None and not second._commands_thread.is_alive()
    finally:
        first.stop()
        seen += list(first_messages)
    assert _thread_counts(seen)[-2:] == [1, 2]  # shared, then given back
    assert seen[-1][0] == "done" and not LiveSession._running
