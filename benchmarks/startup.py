"""How long until the explorer is useful? Launch to a window showing a toy image with its boxes.

    uv run benchmarks/startup.py [--repeats 5]

Prints, as medians over the repeats (each a fresh process, started the same way):
- ``import_s``: ``python -c "import torch, PySide6.QtWidgets"``, the floor any PyTorch + Qt app pays;
- ``first_result_s``: process start to the first window showing the bundled model's boxes on a
  toy image, through the real entry point (``explorer.app.run_app``: splash, window, model
  loaded and run off the GUI thread);
- ``views_ready_s``: until the training panel and analysis views are built as well (they are
  imported off the GUI thread after the first result, so the window is usable meanwhile);
- ``ratio``: first_result_s / import_s.
Targets (issue 17): first_result_s <= 3 s and ratio <= 1.5. Runs offscreen unless a DISPLAY is
set; settings go to a temporary folder, so the user's own are neither read nor changed. The
children may write Python's bytecode cache (as any launch does unless PYTHONDONTWRITEBYTECODE is
set), so after the first repeat every run reads it: the medians are warm launches.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detr_core.precision import cpu_description  # noqa: E402

APP_CODE = """
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from explorer.app import run_app

def on_window(window):
    def first_result(result):
        kept = window.state.kept_queries()
        if result is None or not kept:
            return
        QApplication.processEvents()  # paint the boxes
        print("FIRST_RESULT", len(kept), flush=True)
    window.state.resultChanged.connect(first_result)
    def ready():
        print("VIEWS_READY", flush=True)
        window.controller.wait()
        QApplication.instance().quit()
    window.viewsBuilt.connect(lambda: QTimer.singleShot(0, ready))

sys.exit(run_app([], on_window=on_window))
"""


def _run(code: str, markers: tuple[str, ...]) -> dict[str, float]:
    """Seconds from process start to each marker line the child prints."""
    env = dict(os.environ)
    # Python's bytecode cache as every user has it (written at the first launch, read after):
    # without it every launch compiles torch's and the app's sources again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if "DISPLAY" not in env:
        env["QT_QPA_PLATFORM"] = "offscreen"
    with tempfile.TemporaryDirectory() as config:
        env["XDG_CONFIG_HOME"] = config  # QSettings' folder on Linux: a fresh user
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        seen: dict[str, float] = {}
        for line in proc.stdout:
            for marker in markers:
                if line.startswith(marker) and marker not in seen:
                    seen[marker] = time.perf_counter() - t0
        end = time.perf_counter() - t0
        if proc.wait(timeout=120) != 0 or set(seen) != set(markers):
            raise RuntimeError(f"the child exited with {proc.returncode} after {sorted(seen)}")
    seen.setdefault("EXIT", end)
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    _run("import torch, PySide6.QtWidgets", ())  # a first launch writes the bytecode cache
    _run(APP_CODE, ("FIRST_RESULT", "VIEWS_READY"))
    imports, firsts, readies = [], [], []
    for i in range(args.repeats):  # interleaved, so a busy moment hits both alike
        imports.append(_run("import torch, PySide6.QtWidgets; print('IMPORTED', flush=True)", ("IMPORTED",))["EXIT"])
        app = _run(APP_CODE, ("FIRST_RESULT", "VIEWS_READY"))
        firsts.append(app["FIRST_RESULT"])
        readies.append(app["VIEWS_READY"])
        print(f"run {i + 1}: import {imports[-1]:.2f} s, first result {firsts[-1]:.2f} s, "
              f"views ready {readies[-1]:.2f} s", file=sys.stderr, flush=True)
    imp, first, ready = (statistics.median(v) for v in (imports, firsts, readies))
    print(json.dumps({
        **cpu_description(), "repeats": args.repeats,
        "import_s": round(imp, 2), "first_result_s": round(first, 2), "views_ready_s": round(ready, 2),
        "ratio": round(first / imp, 2),
        "first_result_spread_s": [round(min(firsts), 2), round(max(firsts), 2)],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
