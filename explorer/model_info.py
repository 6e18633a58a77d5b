"""What the model knows (its classes and training data, from the checkpoint) and whether an image
looks like that data: a photo shown to the toy model gets confident boxes that mean little, and
the window says so next to them."""

from __future__ import annotations

import numpy as np

from .state import LoadedModel


def knowledge_text(loaded: LoadedModel | None) -> str:
    """One or two plain sentences: the classes and what the weights were trained on."""
    if loaded is None:
        return "No model."
    names = loaded.class_names
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    classes = f"Knows {len(names)} class{'es' if len(names) != 1 else ''}: {shown}."
    tc = loaded.train_config
    if loaded.checkpoint is not None and loaded.checkpoint.source == "facebookresearch/detr":
        return f"{classes} Trained on COCO photos (the official facebookresearch/detr weights)."
    if tc is not None and list(tc.data.classes) == names:
        d = tc.data
        data = (f"Trained on toy shapes: synthetic {d.image_size}×{d.image_size} images with "
                f"{d.min_objects}–{d.max_objects} flat-coloured shapes on a gradient background")
        step = loaded.trained.step if loaded.trained is not None else (
            loaded.checkpoint.step if loaded.checkpoint is not None else 0)
        return f"{classes} {data}{f', {step} steps' if step else ''}."
    if loaded.source == "untrained model":
        return f"{classes} Untrained: random weights, its boxes mean nothing yet. Train one in the Training tab."
    return f"{classes} Training data: not recorded in the checkpoint."


def trained_on_toy_shapes(loaded: LoadedModel | None) -> bool:
    if loaded is None:
        return False
    tc = loaded.train_config
    if tc is not None:
        return list(tc.data.classes) == loaded.class_names
    return loaded.source == "untrained model"


def image_texture(rgb: np.ndarray) -> tuple[float, float]:
    """(edge fraction, median residual) of ``rgb`` [H, W, 3] uint8 seen at about 128 pixels:
    the share of pixels that differ from their 3x3 neighbourhood by more than 0.06 (in [0, 1]
    grey units), and the median of that difference (pixel noise)."""
    h, w = rgb.shape[:2]
    step = max(1, round(max(h, w) / 128))
    grey = rgb[::step, ::step].astype(np.float32).mean(-1) / 255  # [h', w']
    p = np.pad(grey, 1, mode="edge")
    mean = sum(p[dy:dy + grey.shape[0], dx:dx + grey.shape[1]] for dy in range(3) for dx in range(3)) / 9
    residual = np.abs(grey - mean)
    return float((residual > 0.06).mean()), float(np.median(residual))


def far_from_toy_shapes(rgb: np.ndarray) -> str:
    """Why ``rgb`` does not look like a toy-shapes image ("" when it does). Toy images are square,
    with flat shapes (few edges) and light pixel noise; photos have many edges, drawings none."""
    h, w = rgb.shape[:2]
    if max(h, w) > 1.15 * min(h, w):
        return "toy-shapes images are square, this one is not"
    edges, noise = image_texture(rgb)
    if edges > 0.09:
        return "it has far more texture and edges than the toy shapes"
    if noise < 0.004:
        return "it has none of the toy shapes' pixel noise (a drawing or a screenshot?)"
    if noise > 0.03:
        return "it is much noisier than the toy shapes"
    return ""


def distribution_warning(loaded: LoadedModel | None, rgb: np.ndarray | None) -> str:
    """A plain warning when the image is far from the model's training data ("" otherwise)."""
    if rgb is None or not trained_on_toy_shapes(loaded):
        return ""
    reason = far_from_toy_shapes(rgb)
    if not reason:
        return ""
    assert loaded is not None
    names = ", ".join(loaded.class_names)
    return (f"This image is far from what the model was trained on: {reason}. "
            f"The model only knows {names}: any box it draws here is a guess, whatever its score.")
