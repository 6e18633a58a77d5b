"""``main.py export CKPT --format onnx OUT``: an ONNX file onnxruntime runs to the eager model's
outputs at batch sizes and image sizes the export never saw (height and width dynamic for plain
DETR, one fixed size for the deformable family), optionally with scores, labels and pixel boxes
equal to the project's own postprocessing; a missing onnxruntime is named with the command that
installs it, and a file that differs from the model is removed."""

import dataclasses
import json
import os
import sys
from importlib.util import find_spec

import pytest
import torch
from conftest import ROOT, call_main

TOY = ROOT / "checkpoints" / "toy_shapes.pt"
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: a second thread only costs
needs_onnxruntime = pytest.mark.skipif(
    find_spec("onnxruntime") is None or find_spec("onnx") is None,
    reason="onnx or onnxruntime is not installed (the optional extra: uv sync --extra onnx)")


def _run(path, *inputs):
    from detr_core.formats.onnx import session

    names = ("images", "sizes")
    return [torch.from_numpy(a) for a in session(path).run(None, {n: x.numpy() for n, x in zip(names, inputs)})]


@needs_onnxruntime
def test_the_bundled_model_exports_with_dynamic_batch_and_size_and_runs_in_onnxruntime(tmp_path, capsys):
    import onnx

    from detr_core.checkpoint import load_checkpoint

    out = tmp_path / "toy.onnx"
    assert call_main("export", TOY, "--format", "onnx", out) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "max abs difference" in printed and "H and W dynamic" in printed
    ckpt = load_checkpoint(TOY)
    model = ckpt.build_model().eval()
    cfg = model.config
    gen = torch.Generator().manual_seed(3)
    # a batch size and an image size neither the export's example (2) nor its self-check (1, 3) used
    for images in (torch.randn(4, 3, cfg.image_min_size - 48, cfg.image_min_size + 32, generator=gen),):
        logits, boxes = _run(out, images)
        with torch.no_grad():
            eager = model(images)
        assert logits.shape == eager["pred_logits"].shape == (len(images), cfg.num_queries, cfg.num_logits)
        assert (logits - eager["pred_logits"]).abs().max() <= 1e-4
        assert (boxes - eager["pred_boxes"]).abs().max() <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == ckpt.class_names and meta["classifier"] == cfg.classifier


@needs_onnxruntime
def test_plain_detr_postprocessed_outputs_equal_the_projects_detections(tmp_path, tiny_config):
    """``--postprocess``: scores, labels and boxes in pixels of each image's given size, as
    :func:`detr_core.model.postprocess.detections` gives them for the same batch."""
    from detr_core.formats.onnx import write_onnx
    from detr_core.model.postprocess import detections
    from detr_core.model.registry import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config).eval()  # learned queries, softmax classifier
    out = tmp_path / "tiny.onnx"
    done = write_onnx(model, out, ["a", "b", "c"], postprocess=True)
    assert done.size is None and done.difference <= 1e-4 and done.exporter == "torchscript"
    images = torch.randn(2, 3, 96, 112, generator=torch.Generator().manual_seed(5))
    sizes = torch.tensor([[480, 640], [375, 500]])
    logits, boxes, scores, labels, boxes_xyxy = _run(out, images, sizes)
    with torch.no_grad():
        eager = model(images)
    expected = detections(eager["pred_logits"], eager["pred_boxes"], "softmax", sizes)
    assert (logits - eager["pred_logits"]).abs().max() <= 1e-4
    assert labels.dtype == torch.int64
    for i, e in enumerate(expected):
        assert torch.equal(labels[i], e["labels"])
        torch.testing.assert_close(scores[i], e["scores"], rtol=0, atol=1e-4)
        torch.testing.assert_close(boxes_xyxy[i], e["boxes"], rtol=0, atol=1e-4 * 640)


@needs_onnxruntime
def test_the_deformable_family_exports_at_one_size_with_a_dynamic_batch(tmp_path, tiny_config):
    """Its levels' sizes are Python numbers, frozen into a traced graph: the family says so, and the
    file takes image_max_size square, any batch; another size is an error, not a wrong answer."""
    from detr_core.formats.onnx import write_onnx
    from detr_core.model.registry import build_model

    torch.manual_seed(0)
    config = dataclasses.replace(tiny_config, attention="deformable", classifier="focal", image_max_size=64)
    model = build_model(config).eval()
    out = tmp_path / "deformable.onnx"
    done = write_onnx(model, out)
    assert done.size == (64, 64) and done.difference <= 1e-4
    assert "fixed 64x64" in done.summary()
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(4))  # example 2, check 1 and 3
    logits, boxes = _run(out, images)
    with torch.no_grad():
        eager = model(images)
    assert (logits - eager["pred_logits"]).abs().max() <= 1e-4
    assert (boxes - eager["pred_boxes"]).abs().max() <= 1e-4
    with pytest.raises(Exception):
        _run(out, torch.randn(1, 3, 32, 64))


@needs_onnxruntime
@pytest.mark.parametrize("recipe", ["rt_detr"])
def test_a_recipe_with_query_selection_and_the_hybrid_encoder_exports(tmp_path, tiny_config, recipe):
    """RT-DETR's levers (hybrid encoder, the encoder's top-k tokens as the queries' boxes and
    content) with DINO's contrastive denoising, which is training-only and so not in the file:
    onnxruntime gives the eager model's detections for a batch size the export never saw."""
    from detr_core.formats.onnx import write_onnx
    from detr_core.model.registry import build_model
    from detr_core.presets import preset

    torch.manual_seed(0)
    sizes = {k: getattr(tiny_config, k) for k in ("backbone", "tiny_width", "d_model", "nheads", "num_encoder_layers",
                                                  "num_decoder_layers", "dim_feedforward", "num_queries")}
    config = dataclasses.replace(preset(recipe)[0], **sizes, image_min_size=64, image_max_size=64,
                                 dn_groups=2, dn_contrastive=True)
    assert config.hybrid_encoder and config.query_select and config.query_content == "encoder"
    model = build_model(config).eval()
    with torch.no_grad():  # proposals whose scores differ from token to token: the top-k is not a tie
        model.enc_class_embed.weight.normal_(0, 1.0)
    out = tmp_path / f"{recipe}.onnx"
    done = write_onnx(model, out)
    assert done.size == (64, 64) and done.difference <= 1e-4
    images = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    logits, boxes = _run(out, images)
    with torch.no_grad():
        eager = model(images)
    assert (logits - eager["pred_logits"]).abs().max() <= 1e-4
    assert (boxes - eager["pred_boxes"]).abs().max() <= 1e-4


@needs_onnxruntime
def test_a_file_that_differs_from_the_model_is_an_error_and_is_removed(tmp_path, tiny_config, monkeypatch):
    """The check's bound set below the difference any file gets: the export fails naming the
    difference, and no file a user might take for a good one is left."""
    from detr_core.formats import onnx
    from detr_core.model.registry import build_model

    monkeypatch.setattr(onnx, "TOLERANCE", -1.0)
    monkeypatch.setattr(onnx, "traced_size_dynamic", lambda config: False)  # one export, not two
    out = tmp_path / "tiny.onnx"
    with pytest.raises(ValueError, match=r"differ from the model's by [0-9.e-]+ \(more than -1\); .* was removed"):
        onnx.write_onnx(build_model(tiny_config), out)
    assert not out.exists()


def test_a_missing_onnxruntime_or_onnx_names_the_command_that_installs_it(tmp_path, monkeypatch, capsys,
                                                                          tiny_config):
    from detr_core.formats.onnx import write_onnx
    from detr_core.model.registry import build_model

    out = tmp_path / "toy.onnx"
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "onnxruntime", None)  # ``import onnxruntime`` raises ImportError
        assert call_main("export", TOY, "--format", "onnx", out) == 1
    err = capsys.readouterr().err
    assert "uv sync --extra onnx" in err and "onnxruntime" in err
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ValueError, match="onnx halted.*install them with: uv sync --extra onnx"):
        write_onnx(build_model(tiny_config), out)
    assert not out.exists()


def test_onnx_options_are_refused_for_other_formats(tmp_path, capsys):
    assert call_main("export", TOY, "--format", "pt2", "--postprocess", tmp_path / "x.pt2") == 1
    assert "--format onnx only" in capsys.readouterr().err


@needs_onnxruntime
@pytest.mark.skipif(not os.environ.get("DETR_SLOW_TESTS"),
                    reason="about 20 s (torch.export-based exporter): DETR_SLOW_TESTS=1 runs it; the tracing "
                           "exporter's tests above cover the same file")
def test_the_dynamo_exporter_writes_the_same_file(tmp_path, tiny_config, monkeypatch):
    import tqdm

    from detr_core.formats.onnx import write_onnx

    monkeypatch.setattr(tqdm.tqdm, "monitor_interval", 0)  # no monitor thread left by its progress bars
    from detr_core.model.registry import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config).eval()
    out = tmp_path / "dynamo.onnx"
    done = write_onnx(model, out, postprocess=True, exporter="dynamo")
    assert done.size is None and done.exporter == "dynamo" and done.difference <= 1e-4
    images = torch.randn(3, 3, 80, 64)
    logits, boxes, *_ = _run(out, images, torch.tensor([[100, 200]] * 3))
    with torch.no_grad():
        eager = model(images)
    assert (logits - eager["pred_logits"]).abs().max() <= 1e-4


@needs_onnxruntime
def test_the_window_exports_onnx_off_the_gui_thread_and_says_the_checks_difference(qtbot, tmp_path, settings,
                                                                                 monkeypatch, tiny_config):
    """File ▸ Export Model ▸ ONNX…: the file dialog (answered here), the export on a worker thread
    with the status bar busy, then a notice naming the file and the check's difference; the file
    reloads in onnxruntime and gives the model's outputs. A missing onnxruntime is a message."""
    from PySide6.QtWidgets import QFileDialog

    from detr_core.model.registry import build_model
    from explorer.main_window import MainWindow
    from explorer.state import LoadedModel

    window = MainWindow(settings=settings, checkpoint=None, runs_folder=tmp_path / "runs")
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.model is not None, timeout=20000)
    torch.manual_seed(0)
    model = build_model(tiny_config).eval()
    window.state.set_model(LoadedModel(model, ["a", "b", "c"], "test"))
    out = tmp_path / "exported.onnx"
    asked = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda parent, title, start, filters: (asked.append((title, start, filters)) or str(out), ""))
    actions = {a.text().replace("&", ""): a for a in window.act_export_model.menu().actions()}
    assert {"Official DETR (.pth)…", "Hugging Face Folder…", "PyTorch Program (.pt2)…", "ONNX…"} <= set(actions)
    notices = []
    monkeypatch.setattr(window, "notify", lambda text, *a, **k: notices.append(text))
    actions["ONNX…"].trigger()
    assert asked and asked[0][1].endswith("model.onnx") and "*.onnx" in asked[0][2]
    assert not window.busy.isHidden() and "Exporting the model to exported.onnx" in window.activity.text()
    qtbot.waitUntil(lambda: window.files.last_export is not None, timeout=60000)
    assert window.busy.isHidden()
    assert notices and str(out) in notices[-1] and "differ from the model's by at most" in notices[-1]
    images = torch.randn(2, 3, 80, 96)
    logits, boxes = _run(out, images)
    with torch.no_grad():
        eager = model(images)
    assert (logits - eager["pred_logits"]).abs().max() <= 1e-4
    assert (boxes - eager["pred_boxes"]).abs().max() <= 1e-4

    errors = []
    window.show_error = lambda title, message: errors.append((title, message))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert window.export_checked("onnx", tmp_path / "again.onnx")
    qtbot.waitUntil(lambda: bool(errors), timeout=20000)
    assert errors[0][0] == "Cannot export model" and "uv sync --extra onnx" in errors[0][1]
    assert window.busy.isHidden() and not (tmp_path / "again.onnx").exists()
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=20000)
