"""``main.py export CKPT --format pt2 OUT``: a ``torch.export`` program of the model that another
Python, without this project importable (``-I -S`` from another folder), loads with
``torch.export.load`` and runs on batches of any size (batch, height and width are dynamic),
giving the eager model's logits and boxes; where the size cannot stay dynamic, one fixed size."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import ROOT, call_main

TOY = ROOT / "checkpoints" / "toy_shapes.pt"


def test_a_pt2_export_runs_without_the_project_and_matches_the_eager_model(tmp_path, capsys):
    out = tmp_path / "toy.pt2"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The project is installed editable (a .pth file in site-packages): -S skips .pth files, and
    # the script puts back site-packages alone, for torch and what it needs. The other Python
    # imports torch while this one exports, then waits for a line on stdin.
    site_packages = str(Path(torch.__file__).parents[1])
    script = textwrap.dedent(f"""
        import sys
        sys.path.append({site_packages!r})
        import torch
        try:
            import detr_core
        except ImportError:
            pass
        else:
            sys.exit("detr_core is importable: " + detr_core.__file__)
        sys.stdin.readline()
        program = torch.export.load({str(out)!r})
        images = torch.load({str(tmp_path / "images.pt")!r})
        with torch.no_grad():
            logits, boxes = program.module()(images)
        torch.save({{"logits": logits, "boxes": boxes}}, {str(tmp_path / "outputs.pt")!r})
    """)
    # -I ignores PYTHONPYCACHEPREFIX: pass the session's compiled-bytecode folder on (see conftest)
    cache = ["-X", f"pycache_prefix={sys.pycache_prefix}"] if sys.pycache_prefix else []
    other = subprocess.Popen([sys.executable, "-I", "-S", *cache, "-c", script], cwd=elsewhere, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert call_main("export", TOY, "--format", "pt2", out) == 0
        printed = capsys.readouterr().out
        assert f"wrote {out}" in printed and "max abs difference" in printed

        from detr_core.checkpoint import load_checkpoint

        model = load_checkpoint(TOY).build_model()
        cfg = model.config
        # a size and batch the export's own example and self-check did not use
        images = torch.randn(3, 3, cfg.image_min_size - 16, cfg.image_max_size - 48,
                             generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            eager = model(images)
        torch.save(images, tmp_path / "images.pt")
        _, err = other.communicate("go\n", timeout=120)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert other.returncode == 0, err[-3000:]
    got = torch.load(tmp_path / "outputs.pt")
    assert got["logits"].shape == eager["pred_logits"].shape == (3, cfg.num_queries, cfg.num_logits)
    assert got["boxes"].shape == (3, cfg.num_queries, 4)
    assert (got["logits"] - eager["pred_logits"]).abs().max() <= 1e-4
    assert (got["boxes"] - eager["pred_boxes"]).abs().max() <= 1e-4


def test_a_program_that_differs_from_the_model_is_an_error_and_leaves_no_file(tmp_path, tiny_config, monkeypatch):
    """The self-check's bound set below the (zero) difference the tiny model gets: the export fails
    naming the difference, and no file a user might take for a good one is left."""
    import pytest

    from detr_core.formats import pt2
    from detr_core.model.registry import build_model

    monkeypatch.setattr(pt2, "TOLERANCE", -1.0)
    out = tmp_path / "tiny.pt2"
    with pytest.raises(ValueError, match=r"differ from the model's by 0 \(more than -1\)"):
        pt2.write_pt2(build_model(tiny_config), out)
    assert not out.exists()


def test_a_model_whose_size_cannot_stay_dynamic_is_exported_at_its_max_size(tmp_path, tiny_config):
    """The deformable family's sampling grid makes torch.export give up dynamic height and width:
    the program has a dynamic batch at image_max_size square, and says so."""
    import dataclasses

    import pytest

    from detr_core.formats import pt2
    from detr_core.model.registry import build_model

    config = dataclasses.replace(tiny_config, attention="deformable", classifier="focal")
    model = build_model(config).eval()
    out = tmp_path / "deformable.pt2"
    diff, size, batch = pt2.write_pt2(model, out)
    assert size == (128, 128) and diff <= 1e-4
    program = torch.export.load(str(out)).module()
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        logits, _ = program(images)
        assert (logits - model(images)["pred_logits"]).abs().max() <= 1e-4
        with pytest.raises(Exception):
            program(torch.randn(1, 3, 96, 128))


@pytest.mark.skipif(not os.environ.get("DETR_SLOW_TESTS"),
                    reason="about 10 s each (20 s of the 5-minute budget; the deformable test above and the "
                           "ONNX recipe tests cover the same path): DETR_SLOW_TESTS=1 runs it")
@pytest.mark.parametrize("recipe", ["dino", "rt_detr"])
def test_the_dino_and_rt_detr_recipes_export_at_their_max_size(tmp_path, tiny_config, recipe):
    """Query selection's top-k, the hybrid encoder and encoder-fed content trace; denoising is
    training-only, so the program holds the model as it predicts."""
    import dataclasses

    from detr_core.formats import pt2
    from detr_core.model.registry import build_model
    from detr_core.presets import preset

    torch.manual_seed(0)
    sizes = {k: getattr(tiny_config, k) for k in ("backbone", "tiny_width", "d_model", "nheads", "num_encoder_layers",
                                                  "num_decoder_layers", "dim_feedforward", "num_queries")}
    config = dataclasses.replace(preset(recipe)[0], **sizes, image_min_size=64, image_max_size=64)
    model = build_model(config).eval()
    with torch.no_grad():  # proposals whose scores differ from token to token: the top-k is not a tie
        model.enc_class_embed.weight.normal_(0, 1.0)
    out = tmp_path / f"{recipe}.pt2"
    diff, size, batch = pt2.write_pt2(model, out)
    assert size == (64, 64) and diff <= 1e-4
    images = torch.randn(4, 3, 64, 64)  # a batch size neither the example (2) nor the check (1, 3) used
    with torch.no_grad():
        logits, boxes = torch.export.load(str(out)).module()(images)
        eager = model(images)
    assert (logits - eager["pred_logits"]).abs().max() <= 1e-4
    assert (boxes - eager["pred_boxes"]).abs().max() <= 1e-4
