"""Soak: does the window hold up, and give its memory back, over a long session?

    uv run benchmarks/soak.py [--steps 1000] [--files 200] [--interval 0.5]
    uv run benchmarks/soak.py --images 2000

With ``--images N``, only images, in one window (offscreen unless a DISPLAY is set): N new
images, three of four a New Toy Sample and every fourth a switch to one of a few image files
opened as a drop would (``open_path``), each waited for until its result is on screen. Prints the
app's RSS after a warm-up of 50 images and at the end, the growth per image, and the window's
QObjects and the app's Python objects before and after (a leak of a few KB per image shows in
all three).

Otherwise, in one window (offscreen unless a DISPLAY is set), through the window's own paths:

- trains ``--steps`` steps in the Training panel (the ``fast`` preset, made small, with a step
  budget instead of minutes), in its training child process, with live previews on;
- meanwhile opens ``--files`` files one after another as a drop would (``open_path``): random
  bytes, truncated images and checkpoints, text files, valid toy images of various sizes (up to
  4000 px), the bundled checkpoint and a checkpoint with NaN weights; every refused file must
  give a message (the message boxes are answered like a user clicking OK);
- samples the resident memory (RSS) of every process involved every ``--interval`` seconds:
  the app, the training child, and multiprocessing's forkserver.

Prints a memory line every 10 s, then per process the peak and the final RSS (after the run, a
toy sample and a settle), how many files opened and how many were refused with a message.
Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "DISPLAY" not in os.environ:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def make_files(folder: Path, count: int, seed: int = 0) -> list[tuple[Path, str]]:
    """``count`` files of every kind, shuffled: (path, kind)."""
    import numpy as np
    import torch
    from PIL import Image

    from detr_core.checkpoint import load_checkpoint, save_checkpoint
    from detr_core.data import ToyShapes
    from explorer.main_window import BUNDLED_CHECKPOINT

    rng = random.Random(seed)
    toy = ToyShapes(seed=seed, split="soak")
    ckpt = load_checkpoint(BUNDLED_CHECKPOINT)
    model = ckpt.build_model()
    with torch.no_grad():
        model.class_embed.weight[0, 0] = float("nan")
    nan_ckpt = save_checkpoint(folder / "diverged.pt", model, ckpt.class_names)
    bundled_bytes = BUNDLED_CHECKPOINT.read_bytes()
    kinds = ["random bytes", "truncated image", "truncated checkpoint", "text file", "toy image",
             "photo-sized image", "bundled checkpoint", "NaN checkpoint"]
    files = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        if kind == "random bytes":
            path = folder / f"random_{i}{rng.choice(['.png', '.jpg', '.pt', '.bin'])}"
            path.write_bytes(os.urandom(rng.randint(10, 200_000)))
        elif kind == "truncated image":
            path = folder / f"truncated_{i}.png"
            buf = folder / "full.png"
            Image.fromarray(toy.sample(i).image).resize((400, 300)).save(buf)
            data = buf.read_bytes()
            path.write_bytes(data[: rng.randint(20, len(data) // 2)])
        elif kind == "truncated checkpoint":
            path = folder / f"truncated_{i}.pt"
            path.write_bytes(bundled_bytes[: rng.randint(100, len(bundled_bytes) - 100)])
        elif kind == "text file":
            path = folder / f"notes_{i}{rng.choice(['.png', '.jpg', '.pt', '.txt'])}"
            path.write_text("not an image, not a checkpoint\n" * rng.randint(1, 500))
        elif kind == "toy image":
            size = rng.choice([32, 64, 128, 200, 320, 640])
            path = folder / f"toy_{i}.{rng.choice(['png', 'jpg', 'bmp', 'webp'])}"
            Image.fromarray(toy.sample(i).image).resize((size, int(size * rng.uniform(0.5, 1.5)))).save(path)
        elif kind == "photo-sized image":
            w, h = rng.choice([(1600, 1200), (3000, 2000), (4000, 3000), (2500, 4000)])
            path = folder / f"photo_{i}.jpg"
            small = np.asarray(Image.fromarray(toy.sample(i).image).resize((w // 8, h // 8)))
            Image.fromarray(small).resize((w, h)).save(path, quality=85)
        elif kind == "bundled checkpoint":
            path = folder / f"bundled_{i}.pt"
            shutil.copyfile(BUNDLED_CHECKPOINT, path)
        else:
            path = folder / f"diverged_{i}.pt"
            shutil.copyfile(nan_ckpt, path)
        files.append((path, kind))
    rng.shuffle(files)
    return files


def soak_images(count: int, warm_up: int = 50, seed: int = 0) -> None:
    """``count`` new images in one window, after ``warm_up`` of them: RSS, QObjects and Python
    objects before and after (see the module's docstring)."""
    import gc

    from PIL import Image
    from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings
    from PySide6.QtWidgets import QApplication

    from detr_core.data import ToyShapes
    from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="detr_soak_images_"))
    toy = ToyShapes(seed=seed, split="soak")
    files = []
    for i, size in enumerate((128, 200, 320, 480, 640)):
        path = work / f"image_{i}.png"
        Image.fromarray(toy.sample(i).image).resize((size, size * 3 // 4)).save(path)
        files.append(path)
    window = MainWindow(settings=QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat),
                        checkpoint=BUNDLED_CHECKPOINT, runs_folder=work / "runs")
    window.resize(1400, 900)
    window.show()

    def settle() -> None:
        while window.controller.queue.busy:
            app.processEvents()
            time.sleep(0.001)
        app.processEvents()

    shown = [0]

    def show(n: int) -> None:
        for _ in range(n):
            if shown[0] % 4 == 3:
                window.open_path(files[(shown[0] // 4) % len(files)])
            else:
                window.new_toy_sample()
            settle()
            shown[0] += 1

    def measure() -> tuple[float, int, int]:
        QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
        gc.collect()
        return rss_mb(os.getpid()) or float("nan"), len(window.findChildren(QObject)), len(gc.get_objects())

    settle()
    window.build_views()
    show(warm_up)
    rss0, qobjects0, objects0 = measure()
    t0 = time.perf_counter()
    for done in range(0, count, 250):
        show(min(250, count - done))
        print(f"[{time.perf_counter() - t0:6.1f} s] {shown[0] - warm_up:5d} images: RSS {rss_mb(os.getpid()):.1f} MB",
              flush=True)
    rss1, qobjects1, objects1 = measure()
    print()
    print(f"{count} new images ({count - count // 4} toy samples, {count // 4} image files) in "
          f"{time.perf_counter() - t0:.0f} s, after {warm_up} to warm up")
    print(f"RSS            {rss0:9.1f} MB -> {rss1:9.1f} MB: {(rss1 - rss0) * 1024 / count:+.2f} KB per image")
    print(f"QObjects       {qobjects0:9d}    -> {qobjects1:9d}   : {(qobjects1 - qobjects0) / count:+.3f} per image")
    print(f"Python objects {objects0:9d}    -> {objects1:9d}   : {(objects1 - objects0) / count:+.2f} per image")
    window.close()
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--niceness", type=int, default=None,
                        help="the training child's niceness (default: the app's, 10); 0 on a busy shared "
                             "machine, where a niced child barely runs (memory does not depend on it)")
    parser.add_argument("--images", type=int, default=0,
                        help="only show this many new images (toy samples and image switches): memory per image")
    args = parser.parse_args()
    if args.images:
        soak_images(args.images)
        return

    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    app = QApplication.instance() or QApplication([])
    from detr_core.train import live
    from explorer import training_worker
    from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

    if args.niceness is not None:
        training_worker.TRAINING_NICENESS = args.niceness

    work = Path(tempfile.mkdtemp(prefix="detr_soak_"))
    files = make_files(work, args.files)
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard)  # closing

    window = MainWindow(settings=QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat),
                        checkpoint=BUNDLED_CHECKPOINT, runs_folder=work / "runs")
    window.resize(1400, 900)
    window.show()
    live.warm_up(wait=True)

    samples: dict[str, list[tuple[float, float]]] = {}
    t0 = time.perf_counter()

    def processes() -> dict[str, int]:
        found = {"app": os.getpid()}
        worker = window.training.worker
        process = worker.session.process if worker is not None else None
        if process is not None and process.pid and process.is_alive():
            found["training child"] = process.pid
        from multiprocessing import forkserver

        server = getattr(forkserver._forkserver, "_forkserver_pid", None)
        if server:
            found["forkserver"] = server
        return found

    last_print = [0.0]

    def sample() -> dict[str, float]:
        now = time.perf_counter() - t0
        current = {}
        for name, pid in processes().items():
            mb = rss_mb(pid)
            if mb is not None:
                samples.setdefault(name, []).append((now, mb))
                current[name] = mb
        if now - last_print[0] >= 10:
            last_print[0] = now
            steps = len(window.training.plots.steps)
            line = ", ".join(f"{n} {s[-1][1]:.0f} MB" for n, s in samples.items() if s and s[-1][0] == now)
            print(f"[{now:6.1f} s] step {steps:4d}, files {opened['count']:3d}: {line}", flush=True)
        return current

    timer = QTimer()
    timer.timeout.connect(sample)
    timer.start(int(args.interval * 1000))

    def pump(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.005)

    def until(condition, timeout: float) -> bool:  # noqa: ANN001
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if condition():
                return True
            app.processEvents()
            time.sleep(0.005)
        return False

    until(lambda: window.state.result is not None, 60)
    window.controller.wait(60000)
    pump(2)
    start_rss = sample()

    # --- training in the window's training path: a small fast model, a step budget ---------------
    panel = window.training
    panel.preset.setCurrentText("fast")
    panel.queries.setValue(8)  # small and fast: this measures memory over a long session
    panel.enc_layers.setValue(1)
    panel.dec_layers.setValue(2)
    panel.d_model.setCurrentText("32")
    panel.batch.setValue(4)
    panel.eval_every.setValue(250)
    model_cfg, train_cfg = panel.configs()
    budget = replace(train_cfg, steps=args.steps, max_seconds=None)
    panel.configs = lambda: (model_cfg, budget)  # the panel's own Start, with a step budget
    panel.btn_start.click()

    # --- open files while it trains ------------------------------------------------------------
    opened = {"count": 0, "refused": 0, "silent": 0}
    errors: list[str] = []
    window.errorShown.connect(errors.append)
    by_kind: dict[str, list[int]] = {}
    t_files = time.perf_counter()
    for path, kind in files:
        before = len(errors)
        window.open_path(path)
        until(lambda: not window.controller.queue.busy, 120)
        pump(0.05)
        refused = len(errors) > before
        try:
            if window._error_box is not None and window._error_box.isVisible():
                window._error_box.accept()  # the user clicks OK (the box then deletes itself)
        except RuntimeError:
            pass  # already closed and deleted
        opened["count"] += 1
        opened["refused"] += refused
        stats = by_kind.setdefault(kind, [0, 0])
        stats[0] += 1
        stats[1] += refused
    files_seconds = time.perf_counter() - t_files

    until(lambda: not panel.is_running, 3600)
    steps_done = len(panel.plots.steps)
    window.new_toy_sample()
    window.controller.wait(60000)
    pump(3)
    timer.stop()
    final = sample()  # the processes still running, after the run, a toy sample and a settle

    print()
    print(f"trained {steps_done} steps in the window; opened {opened['count']} files in {files_seconds:.0f} s, "
          f"{opened['refused']} refused with a message")
    for kind, (n, refused) in sorted(by_kind.items()):
        print(f"  {kind:22s} {n:3d} opened, {refused:3d} refused")
    for message in sorted({e.split(": ", 1)[-1] for e in errors}):
        print(f"  message: …: {message[:150]}")
    print()
    print(f"{'process':16s} {'start MB':>9s} {'peak MB':>9s} {'final MB':>9s}")
    for name, series in samples.items():
        peak = max(mb for _, mb in series)
        end = final.get(name)
        start = start_rss.get(name)
        print(f"{name:16s} {start if start is not None else float('nan'):9.0f} {peak:9.0f} "
              f"{end if end is not None else float('nan'):9.0f}" + ("" if end is not None else "  (ended)"))
    window.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
