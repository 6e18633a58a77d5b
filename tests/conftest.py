import atexit
import gc
import glob
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
import time

# GUI tests run without a screen; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# Compiled bytecode for this session. Where PYTHONDONTWRITEBYTECODE is set (and no .pyc was ever
# written), every Python process compiles torch and the rest from source: some 5 s of CPU each,
# paid again by each process the tests start (the command-line and startup tests, torchrun and its
# two workers, the training forkserver). The session keeps the .pyc files in a folder of its own
# (PYTHONPYCACHEPREFIX, not next to the sources), written by this process as it imports them and
# read by the processes it starts; the folder is removed when this process exits.
if sys.dont_write_bytecode and not sys.pycache_prefix:
    _PYCACHE = tempfile.mkdtemp(prefix="detr-tests-pycache-")
    atexit.register(shutil.rmtree, _PYCACHE, ignore_errors=True)
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"] = _PYCACHE
    sys.dont_write_bytecode = False
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)  # (or the -B flag)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """For modules that mark themselves with it: one torch thread (the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config():
    from detr_core.config import DETRConfig

    return DETRConfig(
        backbone="tiny", tiny_width=8, d_model=32, nheads=4, num_encoder_layers=1, num_decoder_layers=2,
        dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0, image_min_size=64, image_max_size=128,
    )


# --- nothing left running ----------------------------------------------------------------------
LEFTOVER_GRACE = 5.0  # seconds a test's threads and processes get to end after it


def _child_pids(pid: int) -> set[int]:
    """Live (not zombie) children of ``pid``, from /proc (empty where there is no /proc)."""
    pids: set[int] = set()
    for children in glob.glob(f"/proc/{pid}/task/*/children"):
        try:
            with open(children) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    live = set()
    for child in pids:
        try:
            with open(f"/proc/{child}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X"):
            live.add(child)
    return live


def _infrastructure_pids() -> set[int]:
    """Processes there by design: multiprocessing's forkserver (started by
    ``detr_core.train.live.warm_up``) and its resource tracker."""
    pids = set()
    forkserver = sys.modules.get("multiprocessing.forkserver")
    if forkserver is not None and getattr(forkserver._forkserver, "_forkserver_pid", None):
        pids.add(forkserver._forkserver._forkserver_pid)
    tracker = sys.modules.get("multiprocessing.resource_tracker")
    if tracker is not None and getattr(tracker._resource_tracker, "_pid", None):
        pids.add(tracker._resource_tracker._pid)
    return pids


def _processes() -> dict[int, str]:
    """Child processes that are running, by pid: multiprocessing's, and any child (or child of
    the forkserver: the training processes) seen in /proc."""
    infrastructure = _infrastructure_pids()
    pids = _child_pids(os.getpid())
    for server in infrastructure:
        pids |= _child_pids(server)
    found = {pid: f"pid {pid}" for pid in pids - infrastructure}
    found.update({p.pid: f"{p.name} (pid {p.pid})" for p in multiprocessing.active_children()})
    return found


def _running_objects() -> set[object]:
    """Workers (explorer.workers) and training sessions (detr_core.train.live) still running."""
    found: set[object] = set()
    workers = sys.modules.get("explorer.workers")
    if workers is not None:
        found.update(workers.running_workers())
    live = sys.modules.get("detr_core.train.live")
    if live is not None:
        found.update(live.LiveSession._running)
    return found


def _describe(thing: object) -> str:
    if hasattr(thing, "fn"):  # a Worker
        return f"worker running {getattr(thing.fn, '__qualname__', thing.fn)!r}"
    process = getattr(thing, "process", None)
    return f"training session of a {type(thing.job).__name__} (pid {getattr(process, 'pid', None)})"


def _leftovers(before: tuple[set[threading.Thread], set[object], dict[int, str]]) -> list[str]:
    threads_before, objects_before, processes_before = before
    threads = [t for t in threading.enumerate()
               if t not in threads_before and t.is_alive() and not isinstance(t, threading._DummyThread)]
    found = [f"thread {t.name!r}" for t in threads]
    found += [_describe(o) for o in _running_objects() - objects_before]
    found += [f"process {name}" for pid, name in _processes().items() if pid not in processes_before]
    return found


@pytest.fixture(autouse=True)
def nothing_left_running(request):
    """Fails a test that leaves a thread, an ``explorer.workers`` Worker, a training session or a
    child process running after it ends (napari's suite has the same). Each gets
    LEFTOVER_GRACE seconds to end, with Qt events processed meanwhile so finished signals are
    delivered. The forkserver and its resource tracker are long-lived by design."""
    before = (set(threading.enumerate()), _running_objects(), _processes())
    yield
    deadline = time.monotonic() + LEFTOVER_GRACE
    while True:
        qt_core = sys.modules.get("PySide6.QtCore")
        if qt_core is not None and qt_core.QCoreApplication.instance() is not None:
            qt_core.QCoreApplication.processEvents()
        leftovers = _leftovers(before)
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leftovers:
        pytest.fail("left running after the test: " + "; ".join(leftovers), pytrace=False)
    # a window test's garbage is collected now, while no other thread runs Python, rather than at
    # some allocation of the next test. A closed window's Python-owned Qt objects (its workers'
    # QThreads, pyqtgraph's menus, ...) are freed by the cyclic collector, and shiboken releases the
    # GIL around each C++ destructor it calls, so a worker thread of the next test (a checkpoint
    # load, a training reader) may run Python in the middle of the collection, which CPython's
    # collector is not safe against (python/cpython#61465, #112564): the likely cause of what was
    # seen without this line, the next test hanging or crashing with a segfault while the main
    # thread was "Garbage-collecting" (first seen with cached bytecode; here in 2 of 18 runs of
    # tests/test_gui.py, both of the 6 without it). Since then the windows collect cyclic garbage
    # on the GUI thread only (explorer/gc_policy.py), and finished workers free their threads by
    # reference counting: without this line tests/test_gui.py then passed 24 runs of 24 (with and
    # without cached bytecode, 12 of them writing it). It stays, as cheap insurance: a hang would
    # cost a whole CI run. It is cheap because of pytest_collection_finish below.
    if "qtbot" in request.fixturenames:
        gc.collect()


def pytest_collection_finish(session):
    """Once every test module is imported (torch, Qt, pyqtgraph, the app: some 400,000 objects
    that live as long as the process), move them out of the cyclic collector's sight with
    ``gc.freeze()``. A full collection then walks only what the tests made since: the collection
    after each window test above, and the windows' own GUI-thread collections
    (explorer/gc_policy.py), took 0.3 to 1 s each before, about 100 s of the suite's teardowns.
    What a test makes is collected as before; only the import-time objects are never examined."""
    gc.collect()
    gc.freeze()


# --- two worker processes for the whole suite -----------------------------------------------------
SUITE_WORKERS = 2  # measured on 2 cores: 5:16 in one process, 3:04 in two (README, "Tests")


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): the whole suite (``uv run pytest``, the README's and CI's
    command) runs in two pytest-xdist workers, one per core of the machines it is budgeted on; its
    time is computation more than waiting (user time ~ wall time in one process), so a second core
    nearly halves it. Fewer where fewer cores are usable. A run of chosen files or tests
    (``uv run pytest tests/test_gui.py``) stays in one process: starting workers (each imports
    torch and Qt) costs more than it saves there. ``-n 0`` / ``-n 2`` choose by hand."""
    if config.args_source != pytest.Config.ArgsSource.TESTPATHS:
        return 0
    return max(1, min(SUITE_WORKERS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def call_main(*args) -> int:
    """``main.py ARGS`` as ``main.main(ARGS)`` in this process (torch is imported once, which saves
    seconds per call over a subprocess); argparse's exits become exit codes. Signal handlers,
    torch threads and tqdm's monitor thread are put back or kept away."""
    import signal
    import sys

    import tqdm

    sys.path.insert(0, str(ROOT))
    try:
        import main
    finally:
        sys.path.remove(str(ROOT))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    tqdm.tqdm.monitor_interval = 0  # no monitor thread left behind by a progress bar
    try:
        return main.main([str(a) for a in args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        torch.set_num_threads(threads)


@pytest.fixture
def run_cli(capsys):
    """:func:`call_main` with its output: a CompletedProcess (exit code, stdout, stderr)."""
    import subprocess

    def run(*args):
        code = call_main(*args)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


# --- the window's tests --------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    """A QSettings of the test's own (never the user's)."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def no_blocking_questions(monkeypatch):
    """Closing with unsaved trained weights asks a (modal) question; tests answer "discard".
    Window test modules use it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    from PySide6.QtWidgets import QMessageBox

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)


def shown_window(qtbot, settings, checkpoint=None):
    """A MainWindow on the test's settings (runs beside them), 1000x700, shown, its first result in."""
    from pathlib import Path

    from explorer.main_window import MainWindow

    window = MainWindow(settings=settings, checkpoint=checkpoint, runs_folder=Path(settings.fileName()).parent / "runs")
    qtbot.addWidget(window)
    window.resize(1000, 700)
    window.show()
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=20000)
    return window


def small_training(window):
    """Set the window's training panel to a small, quick run of the fast preset."""
    t = window.training
    t.preset.setCurrentText("fast")
    t.queries.setValue(8)
    t.enc_layers.setValue(1)
    t.dec_layers.setValue(2)
    t.d_model.setCurrentText("32")
    t.batch.setValue(2)
    t.minutes.setValue(5)
    t.eval_every.setValue(0)
    t.dense.setChecked(False)
    t.query_groups.setValue(1)
    t.dn_groups.setValue(0)
