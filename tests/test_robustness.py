"""The core does not lose work and fails in one clear line (issue: "Losing work", "Wrong answers
and tracebacks"). The command line's side of the same cases: test_cli_robustness.py."""

import errno
import io
import math
import os
import shutil
import signal
import time
from collections import namedtuple

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from detr_core.checkpoint import (
    CheckpointError,
    SaveError,
    check_writable,
    hold_signals,
    load_checkpoint,
    load_model,
    remove_stale_temporaries,
    save_checkpoint,
    write_atomically,
)
from detr_core.config import DETRConfig, TrainConfig
from detr_core.data import images as images_module
from detr_core.data.images import ImageLoadError, load_image, read_image
from detr_core.data.toy import ToyShapes
from detr_core.device import clamp_threads, usable_cores
from detr_core.model.detr import DETR
from detr_core.model.matcher import HungarianMatcher
from detr_core.presets import apply_overrides, preset
from detr_core.train.trainer import ErrorEvent, FinishedEvent, StepEvent, Trainer

NAMES = ["rectangle", "ellipse", "triangle"]


def _model(cfg: DETRConfig) -> DETR:
    torch.manual_seed(0)
    return DETR(cfg)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


# --- 1. a diverging run -------------------------------------------------------------------

def test_diverging_run_stops_before_matching_and_keeps_finite_weights(tiny_config, one_thread):
    model_cfg = tiny_config
    train_cfg = TrainConfig(lr=1e9, lr_backbone=1e9, batch_size=2, steps=30, schedule="constant", seed=1, threads=1)
    trainer = Trainer(model_cfg, train_cfg)
    events = list(trainer.events())
    assert isinstance(events[-1], FinishedEvent) and events[-1].reason == "error"
    error = next(e for e in events if isinstance(e, ErrorEvent))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert error.message.startswith("Training stopped: the predictions are not finite (NaN or infinite) at step ")
    assert f"The model keeps the weights of step {len(steps)}." in error.message
    assert trainer.step == len(steps) >= 1
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the last good weights
    assert all(torch.isfinite(b).all() for b in trainer.model.buffers())


def test_matcher_refuses_non_finite_predictions():
    logits = torch.zeros(1, 5, 4)
    logits[0, 2, 1] = math.nan
    boxes = torch.full((1, 5, 4), 0.5)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.2]])}]
    with pytest.raises(FloatingPointError, match="predictions are not finite"):
        HungarianMatcher()({"pred_logits": logits, "pred_boxes": boxes}, targets)
    with pytest.raises(FloatingPointError, match="predictions are not finite"):
        HungarianMatcher()({"pred_logits": torch.zeros(1, 5, 4), "pred_boxes": boxes * math.inf}, targets)


@pytest.mark.parametrize("override,message", [
    ("lr=nan", "lr must be a finite number, got nan"),
    ("lr=inf", "lr must be a finite number, got inf"),
    ("lr=0", "lr must be positive, got 0.0"),
    ("lr_backbone=-1", "lr_backbone must be at least 0, got -1.0"),
    ("clip_max_norm=nan", "clip_max_norm must be a finite number, got nan"),
    ("threads=-1", "threads must be at least 1, got -1"),
    ("threads=abc", "threads must be a whole number, got 'abc'"),
    ("batch_size=0", "batch_size must be at least 1, got 0"),
    ("steps=2.5", "steps: expected a whole number, got '2.5'"),
    ("max_seconds=inf", "max_seconds must be a finite number, got inf"),
    ("max_seconds=-5", "max_seconds must be positive, got -5.0"),
    ("loss.weight_bbox=nan", "weight_bbox must be a finite number, got nan"),
    ("focal_alpha=2", "focal_alpha must be at most 1, got 2.0"),
    ("dropout=1.5", "dropout must be at most 0.99, got 1.5"),
    ("noise=-0.1", "noise must be at least 0, got -0.1"),
    ("warmup_steps=-1", "warmup_steps must be at least 0, got -1"),
])
def test_settings_are_validated_in_one_line(override, message):
    with pytest.raises(ValueError) as info:
        apply_overrides(*preset("fast"), [override])
    assert str(info.value) == message


def test_a_run_with_no_end_is_refused():
    with pytest.raises(ValueError, match="the run has no end"):
        apply_overrides(*preset("fast"), ["steps=0", "max_seconds=none"])
    _, train = apply_overrides(*preset("fast"), ["steps=1e3", "max_seconds=none"])
    assert train.steps == 1000


# --- 9. threads ---------------------------------------------------------------------------

def test_threads_are_clamped_to_the_cores(tiny_config):
    assert clamp_threads(999) == usable_cores() and clamp_threads(1) == 1
    before = torch.get_num_threads()
    try:
        Trainer(tiny_config, TrainConfig(batch_size=2, steps=1, threads=999, eval_images=1))
        assert torch.get_num_threads() == usable_cores()
    finally:
        torch.set_num_threads(before)


# --- 2. where the file goes -----------------------------------------------------------------

def test_check_writable_refuses_bad_destinations(tmp_path):
    (tmp_path / "folder.pt").mkdir()
    (tmp_path / "afile").write_text("x")
    before = _listing(tmp_path)
    with pytest.raises(SaveError, match="it is a folder"):
        check_writable(tmp_path / "folder.pt")
    with pytest.raises(SaveError, match="afile is a file, not a folder"):
        check_writable(tmp_path / "afile" / "sub" / "x.pt")
    with pytest.raises(SaveError, match="^cannot save /proc/x/y.pt: "):
        check_writable("/proc/x/y.pt")
    assert _listing(tmp_path) == before  # nothing created, no temporary left
    assert check_writable(tmp_path / "new" / "m.pt") == tmp_path / "new" / "m.pt"
    assert _listing(tmp_path / "new") == []


# --- 3. disk full -----------------------------------------------------------------------------

def test_disk_full_is_named_and_the_old_file_survives(tmp_path, tiny_config, monkeypatch):
    model = _model(tiny_config)
    path = save_checkpoint(tmp_path / "m.pt", model, NAMES)
    before = path.read_bytes()
    real_fdopen = os.fdopen

    def full_disk(fd, *a, **k):  # the writer hits a full disk: torch's "unexpected pos", then ENOSPC
        os.close(fd)
        return real_fdopen(os.open("/dev/full", os.O_WRONLY), "wb")

    monkeypatch.setattr(os, "fdopen", full_disk)
    with pytest.raises(SaveError) as info:
        save_checkpoint(path, model, NAMES)
    monkeypatch.setattr(os, "fdopen", real_fdopen)
    mb = math.ceil(sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 1e6)
    assert str(info.value) == f"cannot save {path}: no space left on the device (needed about {mb} MB)"
    assert info.value.errno == errno.ENOSPC
    assert "enforce fail" not in str(info.value) and "unexpected pos" not in str(info.value)
    assert path.read_bytes() == before and _listing(tmp_path) == ["m.pt"]


def test_torch_short_write_maps_to_disk_full_when_the_disk_is_full(tmp_path, tiny_config, monkeypatch):
    model = _model(tiny_config)

    def short_write(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", short_write)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(SaveError, match=r"no space left on the device \(needed about \d+ MB\)$"):
        save_checkpoint(tmp_path / "m.pt", model, NAMES)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))  # not full: say what torch said
    with pytest.raises(SaveError, match="unexpected pos"):
        save_checkpoint(tmp_path / "m.pt", model, NAMES)
    assert _listing(tmp_path) == []


# --- 4. a second interrupt during the save ------------------------------------------------------

def test_an_interrupt_during_a_save_waits_until_the_file_is_in_place(tmp_path, tiny_config):
    model = _model(tiny_config)
    path = tmp_path / "m.pt"

    def write(f):
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside torch.save
        time.sleep(0.05)
        torch.save({"format": "detr-explorer-checkpoint", "x": torch.zeros(3)}, f)

    # The handler is set here, not assumed: a test run started as a background job of a
    # non-interactive shell (`pytest &` in a script) inherits SIGINT ignored, Python then installs
    # no KeyboardInterrupt handler, and a held SIGINT is rightly dropped (the next test).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):  # delivered, but only after the file is complete
            write_atomically(path, write)
        assert torch.load(path, weights_only=True)["x"].shape == (3,)
        assert _listing(tmp_path) == ["m.pt"]
        with hold_signals() as held:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.signal(signal.SIGTERM, signal.getsignal(signal.SIGTERM))
            held_now = list(held)
            held.clear()  # (so leaving the block does not deliver it and end the test run)
        assert held_now == [signal.SIGTERM]
        save_checkpoint(path, model, NAMES)  # the handlers are back to what they were
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, before)


def test_an_ignored_interrupt_stays_ignored_through_a_save(tmp_path):
    path = tmp_path / "m.pt"

    def write(f):
        os.kill(os.getpid(), signal.SIGINT)  # held, then handed to the handler before: none
        torch.save({"x": torch.zeros(3)}, f)

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        write_atomically(path, write)  # no KeyboardInterrupt
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert torch.load(path, weights_only=True)["x"].shape == (3,)


# --- 5. temporaries of killed saves ------------------------------------------------------------

def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path, tiny_config):
    model = _model(tiny_config)
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = [tmp_path / f".m.pt.{dead}.0a1b2c3d.tmp", tmp_path / ".m.pt.x8y7z6w5.tmp"]  # new and old style
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    old = time.time() - 3600
    os.utime(stale[1], (old, old))
    alive = tmp_path / f".m.pt.{os.getppid()}.deadbeef.tmp"  # a save in progress in another process
    recent = tmp_path / ".m.pt.abcdefgh.tmp"  # old style, just written: maybe still in progress
    other = tmp_path / f".other.pt.{dead}.0a1b2c3d.tmp"  # another file's: not ours to judge
    for p in (alive, recent, other):
        p.write_bytes(b"x")
    save_checkpoint(tmp_path / "m.pt", model, NAMES)
    assert _listing(tmp_path) == sorted(["m.pt", alive.name, recent.name, other.name])
    assert remove_stale_temporaries(tmp_path / "other.pt") == [other]


# --- 7. anything that is not a checkpoint ---------------------------------------------------------

def test_every_unreadable_file_is_named_not_a_readable_checkpoint(tmp_path):
    (tmp_path / "notes.pt").write_text("a short text\n")
    with pytest.raises(CheckpointError, match=r"^notes.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "notes.pt")
    rng = np.random.default_rng(0)
    for i in range(60):
        path = tmp_path / f"random{i}.pt"
        path.write_bytes(rng.bytes(int(rng.integers(1, 5000))))
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(path)
        assert str(info.value).startswith(f"random{i}.pt: not a ")  # readable / a DETR checkpoint


def test_odd_contents_are_incompatible_not_a_traceback(tmp_path, tiny_config):
    path = save_checkpoint(tmp_path / "m.pt", _model(tiny_config), NAMES)
    raw = torch.load(path, weights_only=True)
    raw["step"] = "many"
    torch.save(raw, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="^odd.pt: incompatible checkpoint contents"):
        load_checkpoint(tmp_path / "odd.pt")


# --- 8 and 10. weights that do not fit, weights that are NaN -------------------------------------

def test_wrong_shapes_name_the_parameter_and_both_shapes(tmp_path, tiny_config):
    path = save_checkpoint(tmp_path / "m.pt", _model(tiny_config), NAMES)
    raw = torch.load(path, weights_only=True)
    raw["model"]["transformer.decoder.layers.1.linear1.weight"] = torch.zeros(65, 32)
    torch.save(raw, tmp_path / "wrong.pt")
    ckpt = load_checkpoint(tmp_path / "wrong.pt")
    expected = ("the weights do not fit the model described in the file: transformer.decoder.layers.1.linear1.weight "
                "has shape [65, 32] in the file but the model needs [64, 32]")
    assert ckpt.problem() == expected
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "wrong.pt")
    assert str(info.value) == "wrong.pt: " + expected


def test_nan_weights_are_named_when_opened(tmp_path, tiny_config):
    model = _model(tiny_config)
    with torch.no_grad():
        model.class_embed.bias[1] = math.inf
    save_checkpoint(tmp_path / "inf.pt", model, NAMES)
    with torch.no_grad():
        model.class_embed.bias[1] = math.nan
    save_checkpoint(tmp_path / "nan.pt", model, NAMES)
    with pytest.raises(CheckpointError, match=r"^nan.pt: the weights are not usable: class_embed.bias holds NaN"):
        load_model(tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"^inf.pt: the weights are not usable: class_embed.bias holds infinite"):
        load_model(tmp_path / "inf.pt")


# --- 6 and 10. images -------------------------------------------------------------------------

def _encoded(array, fmt):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def test_wide_images_are_scaled_not_clipped():
    gray = ToyShapes().sample(0).image[..., 0]
    for array, fmt in [
        (gray.astype(np.uint16) * 257, "PNG"),  # 16-bit PNG (clipped to all white before)
        (gray.astype(np.int32) * 257, "TIFF"),  # 32-bit integer holding 16-bit data
        (gray.astype(np.int32), "TIFF"),  # 32-bit integer holding 8-bit data
        (gray.astype(np.float32) / 255, "TIFF"),  # float in [0, 1]
    ]:
        out = load_image(_encoded(array, fmt))
        assert out.shape == (*gray.shape, 3) and np.abs(out[..., 0].astype(int) - gray).max() <= 1, (array.dtype, fmt)
    wide = np.linspace(-1000, 1000, 64 * 64, dtype=np.float32).reshape(64, 64)  # any other range: its own
    out = load_image(_encoded(wide, "TIFF"))[..., 0]
    assert out.min() == 0 and out.max() == 255


def test_large_images_are_downscaled_while_decoding(monkeypatch):
    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafts.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    photo = np.zeros((3000, 4000, 3), np.uint8)
    photo[:, :2000] = (200, 40, 40)
    loaded = read_image(_encoded(photo, "JPEG"), max_side=400)
    assert drafts[0] == (500, 375)  # decoded at 1/8 size: the full image never existed in memory
    assert loaded.array.shape == (300, 400, 3) and loaded.original_size == (4000, 3000) and loaded.scale == 10
    assert abs(int(loaded.array[150, 100, 0]) - 200) < 8
    png = read_image(_encoded(photo[:, :, 0], "PNG"), max_side=1000)  # other formats: reduced after decoding
    assert png.array.shape == (750, 1000, 3) and png.original_size == (4000, 3000)


def test_images_past_the_limit_are_too_large_not_damaged(monkeypatch):
    data = _encoded(np.zeros((100, 100, 3), np.uint8), "PNG")
    monkeypatch.setattr(images_module, "MAX_PIXELS", 5000)
    with pytest.raises(ImageLoadError, match=r"^the clipboard data: the image is too large \(0 million pixels\)"):
        load_image(data)
    monkeypatch.setattr(images_module, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # Pillow's own decompression-bomb error
    with pytest.raises(ImageLoadError, match="too large") as info:
        load_image(data)
    assert "damaged" not in str(info.value)
