"""Record what a few fp32 training steps compute, as the reference the speed-ups are held to.

    uv run python tests/data/make_speed_reference.py [--rev 4f76727] > tests/data/speed_reference.json

``git archive`` exports ``detr_core`` of the given revision (by default the last one before the
fp32 speed work) to a temporary folder and runs there: for each small configuration, three
``Trainer.train_step`` calls in float32 on one thread, recording every loss part of every step,
the norm of each parameter's (clipped) gradient after the first step, and each parameter's norm
and sum after the last. ``tests/test_speed_equivalence.py`` replays the same steps with the
current code and compares.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "fast": ("fast", ["bf16=off", "batch_size=4"]),
    "vanilla": ("vanilla", ["bf16=off", "batch_size=4"]),
    "r18": ("r18", ["bf16=off", "batch_size=2", "pretrained_backbone=off"]),
}
STEPS = 3


def record(preset_name: str, overrides: list[str]) -> dict:
    import torch

    from detr_core.presets import apply_overrides, preset
    from detr_core.train.trainer import Trainer

    threads = int(os.environ.get("SPEED_REFERENCE_THREADS", "1"))  # another count: a measure of float noise
    torch.set_num_threads(threads)
    model_cfg, train_cfg = apply_overrides(*preset(preset_name), overrides + [f"threads={threads}", "seed=0", "steps=100",
                                                                             "max_seconds=none", "eval_every=0", "eval_images=1"])
    trainer = Trainer(model_cfg, train_cfg)
    bs = train_cfg.batch_size
    steps, grad_norms = [], {}
    for i in range(STEPS):
        steps.append(trainer.train_step(*trainer.dataset.batch(range(i * bs, (i + 1) * bs))))
        if i == 0:
            grad_norms = {n: float(p.grad.norm()) for n, p in trainer.model.named_parameters() if p.grad is not None}
    params = {n: [float(p.detach().norm()), float(p.detach().sum())] for n, p in trainer.model.named_parameters()}
    return {"steps": steps, "grad_norms": grad_norms, "params": params}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from at_revision import main

    sys.exit(main(__file__, "4f76727", lambda: {name: record(*case) for name, case in CASES.items()}))
