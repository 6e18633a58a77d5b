"""The families wrapped from transformers, inference with everything captured against transformers'
own plain forward pass, on the same image size:

    uv run benchmarks/hf_families.py [--repeats 5] [--threads 2] [--families rt_detr dab_detr]

Per family a small-but-real model with random weights (nothing is downloaded), saved with
``save_pretrained`` and opened as the window opens it (:func:`detr_core.checkpoint.load_model`):

- RT-DETR and RT-DETRv2: the R18-vd layout (ResNet-vd 2-2-2-2, hybrid encoder 256 wide, 3 decoder
  layers, 300 queries) on a 640 x 480 input;
- Conditional DETR and DAB-DETR: a ResNet-18 backbone, d_model 256, 3 + 3 layers, 300 queries,
  on a 512 x 672 input;
- D-FINE, DEIMv2, LW-DETR and RF-DETR: see ``benchmarks/hf_realtime_models.py``.

Timed, interleaved, median of ``--repeats`` (after one warm-up each), in wall time and in CPU time
of this process (the steadier figure on a machine other work keeps busy; with ``--threads 1``
the CPU time is the work itself):

- ``transformers``: ``*ForObjectDetection`` called as its users call it (pixel values, and the
  pixel mask where it takes one; its default attention implementation), on the same weights;
- ``captured``: the explorer's forward with ``capture=True`` (every attention map or sampling point,
  every layer's predictions, the selected tokens).

Target (issue 27): captured / transformers <= 1.15. Prints one line per family.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hf_realtime_models  # noqa: E402 - D-FINE, DEIMv2, LW-DETR, RF-DETR (this folder)
import torch  # noqa: E402

FAMILIES = ("rt_detr", "rt_detr_v2", "conditional_detr", "dab_detr", *hf_realtime_models.FAMILIES)


def build(family: str):
    """A transformers detector of ``family`` with random weights, and its input size (H, W)."""
    import transformers as tf

    if family in hf_realtime_models.FAMILIES:
        return hf_realtime_models.build(family)
    labels = {"id2label": {i: f"class {i}" for i in range(80)}}
    if family.startswith("rt_detr"):
        backbone = tf.RTDetrResNetConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic",
                                         out_features=["stage2", "stage3", "stage4"])
        config_class, model_class = ((tf.RTDetrConfig, tf.RTDetrForObjectDetection) if family == "rt_detr"
                                     else (tf.RTDetrV2Config, tf.RTDetrV2ForObjectDetection))
        config = config_class(backbone_config=backbone, encoder_in_channels=[128, 256, 512], decoder_layers=3,
                              hidden_expansion=0.5, num_queries=300, **labels)
        return model_class(config).eval(), (480, 640)
    backbone = tf.ResNetConfig(depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], layer_type="basic",
                               out_features=["stage4"])
    shared = dict(backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, encoder_layers=3,
                  decoder_layers=3, num_queries=300, dropout=0.0, **labels)
    if family == "conditional_detr":
        return tf.ConditionalDetrForObjectDetection(tf.ConditionalDetrConfig(**shared)).eval(), (512, 672)
    return tf.DabDetrForObjectDetection(tf.DabDetrConfig(**shared)).eval(), (512, 672)


def time_family(family: str, repeats: int) -> tuple[float, float, int]:
    from detr_core.checkpoint import load_model
    from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD

    hf, (h, w) = build(family)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        model, _ = load_model(folder)
    torch.manual_seed(0)
    x = torch.randn(1, 3, h, w)  # ImageNet-normalized, as the explorer prepares it
    if model.SPEC.imagenet_normalized:
        theirs = {"pixel_values": x, "pixel_mask": torch.ones(1, h, w, dtype=torch.long)}
    else:
        theirs = {"pixel_values": x * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]}
    detector = model.detector  # the same weights, called as transformers' users call it

    def plain():
        detector(**theirs)

    def captured():
        model(x, capture=True)

    wall: dict[str, list[float]] = {"plain": [], "captured": []}
    cpu: dict[str, list[float]] = {"plain": [], "captured": []}
    with torch.no_grad():
        plain(), captured()  # warm-up (caches, allocator)
        for _ in range(repeats):
            for name, fn in (("plain", plain), ("captured", captured)):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    params = sum(p.numel() for p in model.parameters())
    med = statistics.median
    return (med(wall["plain"]), med(wall["captured"]), med(cpu["plain"]), med(cpu["captured"])), params


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    print(f"torch threads: {torch.get_num_threads()}; median of {args.repeats}, interleaved")
    for family in args.families:
        (plain, captured, plain_cpu, captured_cpu), params = time_family(family, args.repeats)
        print(f"{family:17s} {params / 1e6:5.1f} M params  wall: transformers {plain * 1000:7.1f} ms, captured "
              f"{captured * 1000:7.1f} ms, ratio {captured / plain:.3f}  cpu: {plain_cpu * 1000:7.1f} ms, "
              f"{captured_cpu * 1000:7.1f} ms, ratio {captured_cpu / plain_cpu:.3f}  (target <= 1.15)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
