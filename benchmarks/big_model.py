"""A DETR-R50 opened from a file, on a photo at the reference's 800-pixel size:

    uv run benchmarks/big_model.py [--repeats 3] [--hf] [--window]

The model is the official architecture (ResNet-50, d_model 256, 8 heads, 6 + 6 layers, 100
queries, 91 classes) with random weights: written as an official facebookresearch/detr file
(``{"model", "args"}``) and opened with :func:`detr_core.checkpoint.load_model`, as the window
opens one. Nothing is downloaded. The photo is generated (800x1066, smooth shading, textured
objects, edges and sensor noise): no photo package is a dependency of this project.

Timed on the same prepared input, interleaved, median of ``--repeats``:

- ``plain``: the model's plain forward pass (no capture: fused attention). This stands in for
  the reference implementation's forward pass: facebookresearch/detr is not installed here (it is
  not a package), and this model is built to its layout, parameter for parameter (the file
  round-trips to the reference's format);
- ``hf`` (with ``--hf``, when transformers is installed): transformers' ``DetrForObjectDetection``
  plain forward with the same weights (a second, independent implementation of the reference);
- ``capture``: what the explorer runs for an opened image, ``run_inference(..., capture=True)``:
  resizing and normalizing the photo, the forward pass with every attention map captured
  (encoder self-attention, decoder self- and cross-attention at all layers), and the per-layer
  predictions copied out.

With ``--window`` the file is also opened in the explorer's window (offscreen unless a DISPLAY is
set) and the photo shown twice: seconds from the image to its result on screen, and how late a
10 ms timer on the GUI thread fires meanwhile (the window's responsiveness while the model runs).

Target (issue 12): capture / plain <= 1.0. Prints one line per variant and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_model
from detr_core.config import DETRConfig
from detr_core.data.coco_names import COCO_CLASS_NAMES
from detr_core.data.images import prepare
from detr_core.export import export, export_problems
from detr_core.formats.reference import reference_payload
from detr_core.model.registry import build_model

HEIGHT, WIDTH = 800, 1066  # the reference's shorter side, a 4:3 photo


def photo_like(height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """A generated photo-like image [H, W, 3] uint8: a shaded background, textured ellipses and
    rectangles with hard edges, and sensor noise (edges and texture as a camera photo has)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    sky = np.array([0.55, 0.70, 0.90], np.float32)
    ground = np.array([0.35, 0.30, 0.22], np.float32)
    t = np.clip(yy / height * 1.6 - 0.3, 0, 1)[..., None]
    img = sky * (1 - t) + ground * t  # [H, W, 3]
    for _ in range(14):
        cy, cx = rng.uniform(0.2, 0.95) * height, rng.uniform(0, 1) * width
        ry, rx = rng.uniform(0.03, 0.18) * height, rng.uniform(0.03, 0.18) * width
        colour = rng.uniform(0.05, 0.95, 3).astype(np.float32)
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        shade = 0.75 + 0.25 * np.cos((xx - cx) / rx * 1.3)[..., None]  # light across the object
        stripes = 0.06 * np.sin(xx / rng.uniform(3, 9) + yy / rng.uniform(4, 12))[..., None]  # texture
        img = np.where(inside[..., None], colour * shade + stripes, img)
    img += rng.normal(0, 0.02, img.shape).astype(np.float32)  # sensor noise
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def reference_detr(folder: Path) -> tuple[nn.Module, DETRConfig]:
    """A random DETR-R50 written as an official file and opened from it."""
    torch.manual_seed(0)
    config = DETRConfig(backbone="resnet50", pretrained_backbone=False, dropout=0.0)
    assert not export_problems(config, "reference"), export_problems(config, "reference")
    model = build_model(config).eval()
    with torch.no_grad():  # non-trivial frozen batch norms, as trained weights have
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_(0, 0.1)
    path = folder / "detr-r50-random.pth"
    torch.save(reference_payload(config, model.state_dict()), path)
    opened, ckpt = load_model(path)
    assert ckpt.source == "facebookresearch/detr" and not ckpt.assumptions
    return opened, config


def hf_detr(model: nn.Module, folder: Path):
    from detr_core.checkpoint import load_checkpoint

    try:
        from transformers import DetrForObjectDetection
    except ImportError:
        return None
    names = list(COCO_CLASS_NAMES)[: model.config.num_classes]
    names += [f"class {i}" for i in range(len(names), model.config.num_classes)]
    from detr_core.checkpoint import save_checkpoint

    save_checkpoint(folder / "ours.pt", model, names)
    export(load_checkpoint(folder / "ours.pt"), "hf", folder / "hf")
    return DetrForObjectDetection.from_pretrained(folder / "hf").eval()


def window_figures(path: Path, image: np.ndarray, images: int = 2) -> dict[str, float]:
    """Open ``path`` in the explorer's window (offscreen unless a DISPLAY is set), show ``image``
    ``images`` times and measure: seconds from the image to its result on screen, and how late
    a 10 ms timer fires on the GUI thread meanwhile (the window's responsiveness)."""
    if "DISPLAY" not in os.environ:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from gui_latency import LatenessProbe, percentile  # (benchmarks/ is on the path)
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from explorer.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        settings = QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(settings=settings, checkpoint=path, runs_folder=Path(tmp) / "runs")
        window.show()

        def until(condition, seconds: float = 600) -> None:
            deadline = time.monotonic() + seconds
            while not condition():
                if time.monotonic() > deadline:
                    raise TimeoutError("the window did not finish in time")
                app.processEvents()
                time.sleep(0.001)

        until(lambda: window.state.result is not None and not window.controller.queue.busy)
        probe = LatenessProbe()
        probe.start()
        seconds = []
        for i in range(images):
            before = window.state.result
            t0 = time.perf_counter()
            window.state.set_image(image.copy(), f"photo {i}")
            until(lambda: window.state.result is not before)  # noqa: B023
            seconds.append(time.perf_counter() - t0)
        probe.stop()
        window.controller.shutdown()
        window.close()
    late = probe.lateness
    return {"image_to_result_s_median": statistics.median(seconds),
            "lateness_ms_p99": percentile(late, 99) if late else 0.0,
            "lateness_ms_max": max(late, default=0.0), "ticks": len(late)}


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--hf", action="store_true", help="also time transformers' DetrForObjectDetection")
    parser.add_argument("--window", action="store_true",
                        help="also open the file in the window: image-to-result time and event-loop lateness")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    image = photo_like()
    with tempfile.TemporaryDirectory() as tmp:
        model, config = reference_detr(Path(tmp))
        hf = hf_detr(model, Path(tmp)) if args.hf else None
        in_window = window_figures(Path(tmp) / "detr-r50-random.pth", image) if args.window else None
    names = [str(n) for n in list(COCO_CLASS_NAMES)[: config.num_classes]]
    names += [f"class {i}" for i in range(len(names), config.num_classes)]
    x = prepare(image, config.image_min_size, config.image_max_size)[None]  # [1, 3, 800, 1066]
    mask = torch.ones(x.shape[0], *x.shape[-2:], dtype=torch.long)

    variants = {
        "plain": lambda: model(x, capture=False),
        "capture": lambda: run_inference(model, image, names, capture=True),
    }
    if hf is not None:
        variants["hf"] = lambda: hf(pixel_values=x, pixel_mask=mask)
    times: dict[str, list[float]] = {k: [] for k in variants}
    with torch.no_grad():
        for fn in variants.values():
            fn()  # warm-up
        for _ in range(args.repeats):
            for k, fn in variants.items():  # interleaved: drifting load hits every variant alike
                times[k].append(timed(fn))
        result = run_inference(model, image, names, capture=True)

    print(f"DETR-R50 (random weights, opened from an official-format file), image {HEIGHT}x{WIDTH}, "
          f"input {tuple(x.shape[-2:])}, feature grid {result.feature_size}, torch threads {torch.get_num_threads()}")
    print(f"captured: cross-attention {tuple(result.cross_attention.shape)}, "
          f"encoder q/k {tuple(result.encoder_queries.shape)}")
    med = {k: statistics.median(v) for k, v in times.items()}
    labels = {"plain": "plain forward (reference layout, no capture)",
              "hf": "transformers DetrForObjectDetection forward",
              "capture": "explorer inference, all attention captured"}
    for k, v in times.items():
        print(f"{labels[k]:<48} median {med[k]:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in v)})")
    print(f"ratio capture / plain: {med['capture'] / med['plain']:.2f}  (target <= 1.00)")
    if "hf" in med:
        print(f"ratio capture / transformers: {med['capture'] / med['hf']:.2f}")
    if in_window is not None:
        print(f"in the window: image to result on screen {in_window['image_to_result_s_median']:.2f} s (median); "
              f"10 ms timer late by {in_window['lateness_ms_p99']:.0f} ms (p99), "
              f"{in_window['lateness_ms_max']:.0f} ms (max) over {in_window['ticks']} ticks meanwhile")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
