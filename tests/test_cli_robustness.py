"""The command line does not lose work and answers in one line (issue: "Losing work", "Wrong
answers and tracebacks").

Importing torch costs seconds per process, so the cases run through ``main.main`` in this
process (conftest's ``call_main``: each case's exit status, stdout and stderr, and any escaping
traceback), plus one real process for the signals.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import call_main

from detr_core.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--quiet", "--threads", "1", "--set", "d_model=32", "--set", "dim_feedforward=64",
         "--set", "num_decoder_layers=2", "--set", "tiny_width=8", "--set", "batch_size=2"]


@pytest.fixture
def run_cases(tmp_path: Path, monkeypatch, capsys):
    """Run command lines through ``main.main``, each to its exit status ("traceback" for an
    exception that escaped it), stdout and stderr. Saves into ``tmp_path / "full"`` hit a full
    disk (/dev/full); the current folder (where a failed save falls back to) is
    ``tmp_path / "work"``; the window's modules cannot be imported."""
    full = os.path.realpath(tmp_path / "full")
    real_fdopen = os.fdopen

    def fdopen(fd, *a, **k):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.dirname(target) == full:
            os.close(fd)
            return open("/dev/full", "wb")  # noqa: SIM115 - the caller closes it
        return real_fdopen(fd, *a, **k)

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setitem(sys.modules, "explorer.app", None)  # "import explorer.app" fails

    def run(cases: list[list[str]]) -> list[dict]:
        results = []
        for argv in cases:
            capsys.readouterr()
            try:
                rc = call_main(*argv)
            except Exception:
                traceback.print_exc()
                rc = "traceback"
            out, err = capsys.readouterr()
            results.append({"rc": rc, "out": out, "err": err})
        return results

    return run


def one_line(result: dict) -> str:
    assert "Traceback" not in result["err"], result["err"]
    lines = [line for line in result["err"].strip().splitlines() if line.strip()]
    assert len(lines) == 1, result["err"]
    return lines[0]


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """A good checkpoint and broken ones: weights of the wrong shape, NaN weights, text."""
    from detr_core.checkpoint import save_checkpoint
    from detr_core.config import DETRConfig
    from detr_core.model.detr import DETR

    folder = tmp_path_factory.mktemp("files")
    cfg = DETRConfig(backbone="tiny", tiny_width=8, d_model=32, nheads=4, num_encoder_layers=1,
                     num_decoder_layers=2, dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0,
                     image_min_size=64, image_max_size=128)
    save_checkpoint(folder / "good.pt", DETR(cfg), ["rectangle", "ellipse", "triangle"])
    raw = torch.load(folder / "good.pt", weights_only=True)
    raw["model"]["class_embed.weight"] = torch.zeros(5, 32)
    torch.save(raw, folder / "shapes.pt")
    raw = torch.load(folder / "good.pt", weights_only=True)
    raw["model"]["query_embed.weight"][0, 0] = math.nan
    torch.save(raw, folder / "nan.pt")
    (folder / "notes.pt").write_text("just a few words\n")
    from PIL import Image

    from detr_core.data.toy import ToyShapes

    image = ToyShapes().sample(0).image
    Image.fromarray(image[..., 1].astype(np.uint16) * 257).save(folder / "deep.png")  # 16-bit
    return folder


def test_cli_cases_in_one_process(tmp_path, bad_files, run_cases):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x.pt").write_bytes(b"the previous checkpoint")
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "folder.pt").mkdir()
    before = _listing(tmp_path)
    f = bad_files
    cases = [
        ["train", "--steps", "30", "--set", "lr=1e9", "--out", str(tmp_path / "diverged.pt"), *SMALL],  # 0
        ["train", "--preset", "vanilla", "--steps", "30", "--set", "lr=1e9", "--out", str(tmp_path / "v.pt"),
         *SMALL],  # 1
        ["train", "--steps", "2", "--set", "lr=nan", "--out", str(tmp_path / "n.pt"), *SMALL],  # 2
        ["train", "--steps", "2", "--set", "lr=inf", "--out", str(tmp_path / "n.pt"), *SMALL],  # 3
        ["train", "--set", "threads=-1", "--steps", "2", "--out", str(tmp_path / "n.pt"), "--quiet", *SMALL[3:]],  # 4
        ["train", "--set", "steps=0", "--set", "max_seconds=none", "--out", str(tmp_path / "n.pt"), *SMALL],  # 5
        ["train", "--steps", "2", "--out", str(tmp_path / "folder.pt"), *SMALL],  # 6
        ["train", "--steps", "2", "--out", str(tmp_path / "afile" / "x.pt"), *SMALL],  # 7
        ["train", "--steps", "2", "--out", "/proc/detr-explorer-test/x.pt", *SMALL],  # 8: read-only
        ["train", "--steps", "2", "--out", str(full / "x.pt"), *SMALL],  # 9: disk full
        ["train", "--steps", "1", "--threads", "999", "--out", str(tmp_path / "t.pt"), "--quiet", *SMALL[3:]],  # 10
        ["info", str(f / "shapes.pt")],  # 11
        ["eval", str(f / "shapes.pt")],  # 12
        ["predict", str(f / "shapes.pt"), str(f / "deep.png")],  # 13
        ["info", str(f / "nan.pt")],  # 14
        ["eval", str(f / "nan.pt")],  # 15
        ["info", str(f / "notes.pt")],  # 16
        ["predict", str(f / "good.pt"), str(f / "deep.png"), "--json"],  # 17
        ["gui"],  # 18
    ]
    r = run_cases(cases)

    # 1. a diverging run stops with the documented message and saves the last good weights
    for i, name in ((0, "diverged.pt"), (1, "v.pt")):
        assert r[i]["rc"] == 1 and "Traceback" not in r[i]["err"], r[i]["err"]
        assert "Training stopped: the predictions are not finite" in r[i]["out"]
        assert f"saved {tmp_path / name}" in r[i]["out"]
        ckpt = load_checkpoint(tmp_path / name)
        assert ckpt.step >= 1 and ckpt.problem() is None  # finite weights of the last good step
    # validation: one line, exit 1, nothing trained or written
    assert one_line(r[2]) == "error: lr must be a finite number, got nan" and r[2]["rc"] == 1
    assert one_line(r[3]) == "error: lr must be a finite number, got inf" and r[3]["rc"] == 1
    assert one_line(r[4]) == "error: threads must be at least 1, got -1" and r[4]["rc"] == 1
    assert "no end" in one_line(r[5]) and r[5]["rc"] == 1
    # 2. a bad --out is refused before the first step
    assert one_line(r[6]) == f"error: cannot save {tmp_path / 'folder.pt'}: it is a folder"
    assert one_line(r[7]) == f"error: cannot save {tmp_path / 'afile' / 'x.pt'}: {tmp_path / 'afile'} is a file, not a folder"
    assert one_line(r[8]).startswith("error: cannot save /proc/detr-explorer-test/x.pt: ")
    assert all(r[i]["rc"] == 1 and r[i]["out"] == "" for i in (6, 7, 8))
    # 3. disk full: named as such, the old file survives, the run is saved in the current folder
    line = one_line(r[9])
    assert line.startswith(f"error: cannot save {full / 'x.pt'}: no space left on the device (needed about ")
    assert f"MB); saved to {tmp_path / 'work' / 'x.pt'} instead" in line and r[9]["rc"] == 1
    assert (full / "x.pt").read_bytes() == b"the previous checkpoint"
    assert load_checkpoint(tmp_path / "work" / "x.pt").step == 2
    # 9. --threads 999 is clamped to the cores, with a note
    assert r[10]["rc"] == 0 and "note: 999 threads asked for" in r[10]["err"]
    assert load_checkpoint(tmp_path / "t.pt").train_config.threads == len(os.sched_getaffinity(0))
    # 8. weights that do not fit their config: one line naming the parameter and both shapes
    for i in (11, 12, 13):
        assert one_line(r[i]) == ("error: shapes.pt: the weights do not fit the model described in the file: "
                                  "class_embed.weight has shape [5, 32] in the file but the model needs [4, 32]")
        assert r[i]["rc"] == 1 and r[i]["out"] == ""
    # 10. NaN weights are named when the file is opened
    for i in (14, 15):
        assert one_line(r[i]) == ("error: nan.pt: the weights are not usable: query_embed.weight holds NaN "
                                  "values (the training that made this file diverged)") and r[i]["rc"] == 1
    # 7. a text file named .pt
    assert one_line(r[16]).startswith("error: notes.pt: not a readable PyTorch checkpoint") and r[16]["rc"] == 1
    # 6. a 16-bit image goes through predict (its brightness: test_robustness.py)
    assert r[17]["rc"] == 0 and json.loads(r[17]["out"])["width"] == 128
    # the window's modules missing: a clear line and exit 1, not exit 0
    assert one_line(r[18]).startswith("error: the explorer window cannot start") and r[18]["rc"] == 1

    # nothing else changed: only the files the cases were meant to write
    after = _listing(tmp_path)
    new = sorted(set(after) - set(before))
    assert new == ["diverged.pt", "t.pt", "v.pt", "work/x.pt"], new
    assert all(after[k] == v for k, v in before.items())


def test_sigterm_and_repeated_interrupts_save_the_run(tmp_path):
    """SIGTERM saves like Ctrl-C; a burst of further signals (a process group's SIGINT arrives
    twice through uv) cannot interrupt the save."""
    out = tmp_path / "run.pt"
    err = open(tmp_path / "err.txt", "w")  # noqa: SIM115 - the child writes it while we read it
    args = ["train", "--minutes", "5", "--out", str(out), *SMALL[1:]]  # progress bar on (stderr)
    p = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], stdout=subprocess.PIPE, stderr=err,
                         text=True, cwd=tmp_path)
    deadline = time.time() + 300
    while "%|" not in (tmp_path / "err.txt").read_text() and time.time() < deadline:
        time.sleep(0.2)  # training has started (the bar is drawn after the handlers are set)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    # The burst comes once SIGTERM has been handled: signals pending together are handled in
    # signal-number order (SIGINT before SIGTERM), so a busy process could see SIGINT "first".
    time.sleep(1.0)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGINT):
        time.sleep(0.01)
        p.send_signal(s)
    stdout, _ = p.communicate(timeout=120)
    err.close()
    text = (tmp_path / "err.txt").read_text()
    assert p.returncode == 0, text
    assert "terminated (SIGTERM): saving what has been trained so far" in stdout
    assert f"saved {out}" in stdout and "Traceback" not in text
    assert load_checkpoint(out).step >= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["err.txt", "run.pt"]  # no temporaries
