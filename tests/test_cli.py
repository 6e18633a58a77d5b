"""The headless command line: one clear line and a non-zero exit for bad input. The commands run
through ``main.main`` in this process (the ``run_cli`` fixture); tests/test_cli_robustness.py runs
main.py as real processes (signals, exit codes)."""

import contextlib
import io
import json
import re

import pytest
from conftest import call_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "small.pt"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = call_main("train", "--preset", "fast", "--steps", "3", "--seed", "1", "--threads", "2",
                         "--out", out, "--quiet", "--set", "d_model=32", "--set", "dim_feedforward=64",
                         "--set", "num_encoder_layers=1", "--set", "num_decoder_layers=2", "--set", "tiny_width=8",
                         "--set", "batch_size=2", "--set", "max_seconds=none")
    assert code == 0
    assert out.exists() and "saved" in stdout.getvalue()
    return out


def test_train_eval_predict(trained, tmp_path, run_cli):
    r = run_cli("eval", str(trained), "--json", "--images", "20")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(metrics) == {"AP", "AP50", "AP75", "images"} and metrics["images"] == 20
    from PIL import Image

    from detr_core.data import ToyShapes

    Image.fromarray(ToyShapes().sample(0).image).save(tmp_path / "toy.png")
    r = run_cli("predict", str(trained), str(tmp_path / "toy.png"), "--threshold", "0", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert len(result["detections"]) == 20  # threshold 0: every query of the fast preset
    assert {"query", "class", "score", "box_xyxy"} <= result["detections"][0].keys()


@pytest.mark.parametrize("args,needle", [
    (["train", "--steps", "-3"], "at least 1"),
    (["train", "--preset", "nonsense", "--steps", "1"], "unknown preset"),
    (["train", "--steps", "1", "--set", "warp=9"], "unknown setting"),
    (["eval", "/no/such/file.pt"], "no such file"),
    (["predict", "--threshold", "7", "x.pt", "y.png"], "between 0 and 1"),
    (["eval"], "required"),
])
def test_bad_arguments_give_one_clear_line(args, needle, run_cli):
    r = run_cli(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_unreadable_files(trained, tmp_path, run_cli):
    bad_image = tmp_path / "bad.png"
    bad_image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    r = run_cli("predict", str(trained), str(bad_image))
    assert r.returncode == 1 and "Traceback" not in r.stderr and "bad.png" in r.stderr
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(trained.read_bytes()[:1000])
    r = run_cli("eval", str(bad_ckpt))
    assert r.returncode == 1 and "corrupt or truncated" in r.stderr and "Traceback" not in r.stderr
    coco_like = tmp_path / "coco.pt"
    from detr_core.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(trained)
    save_checkpoint(coco_like, ckpt.build_model(), ["cat", "dog", "cow"])
    r = run_cli("eval", str(coco_like))
    assert r.returncode == 1 and "not the toy shapes" in r.stderr


def test_train_says_first_how_many_threads_it_uses_and_why(tmp_path):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = call_main("train", "--preset", "fast", "--steps", "1", "--out", tmp_path / "t.pt",
                         "--set", "d_model=32", "--set", "dim_feedforward=64", "--set", "num_decoder_layers=1",
                         "--set", "tiny_width=8", "--set", "batch_size=2", "--set", "eval_every=0")
    assert code == 0
    line = next(t for t in err.getvalue().splitlines() if t.startswith("threads: "))
    assert re.fullmatch(r"threads: \d threads? \((\d cores? free|\d of \d cores busy with other work|.* usable cores?)\)",
                        line), line


def test_an_unknown_word_that_is_no_file_is_an_error_naming_the_subcommands(capsys, tmp_path, monkeypatch):
    """`main.py trian` used to open the window and try to open a file called "trian"."""
    monkeypatch.chdir(tmp_path)
    assert call_main("trian") == 2
    err = capsys.readouterr().err
    assert "did you mean train?" in err and "'trian'" in err
    for name in ("gui", "train", "eval", "predict", "info", "export", "make-dataset", "doctor"):
        assert name in err
    assert call_main("bananas") == 2  # nothing close: the list alone
    assert "did you mean" not in capsys.readouterr().err


def test_an_existing_file_still_opens_in_the_window(monkeypatch, tmp_path):
    import main

    opened = []
    monkeypatch.setattr(main, "cmd_gui", lambda args: opened.append(args.paths) or 0)
    monkeypatch.setitem(main.COMMANDS, "gui", main.cmd_gui)
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"")
    assert call_main(photo) == 0 and opened == [[photo]]
