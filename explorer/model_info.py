"""What the model knows (its classes and training data, from the checkpoint) and whether an image
looks like that data: a photo shown to the toy model gets confident boxes that mean little, and
the window says so next to them. :class:`ModelInfoPanel` shows the architecture and lets the user
set what the file did not say (the head count of a weights-only file)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from detr_core.data.coco_names import COCO_CLASS_NAMES
from detr_core.model.registry import describe

from .state import AppState, LoadedModel


def knowledge_text(loaded: LoadedModel | None) -> str:
    """One or two plain sentences: the classes and what the weights were trained on."""
    if loaded is None:
        return "No model."
    names = loaded.class_names
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    classes = f"Knows {len(names)} class{'es' if len(names) != 1 else ''}: {shown}."
    tc = loaded.train_config
    if (loaded.checkpoint is not None and loaded.checkpoint.source == "facebookresearch/detr"
            and names == list(COCO_CLASS_NAMES)):
        return f"{classes} Trained on COCO photos (the official facebookresearch/detr weights)."
    if tc is not None and list(tc.data.classes) == names:
        d = tc.data
        data = (f"Trained on toy shapes: synthetic {d.image_size}×{d.image_size} images with "
                f"{d.min_objects}–{d.max_objects} flat-coloured shapes on a gradient background")
        step = loaded.trained.step if loaded.trained is not None else (
            loaded.checkpoint.step if loaded.checkpoint is not None else 0)
        return f"{classes} {data}{f', {step} steps' if step else ''}."
    if loaded.source == "untrained model":
        return f"{classes} Untrained: random weights, its boxes mean nothing yet. Train one in the Train workspace."
    return f"{classes} Training data: not recorded in the checkpoint."


def knowledge_brief(loaded: LoadedModel | None) -> str:
    """:func:`knowledge_text` in a line or two, for beside the query table: the classes (the
    first few) and the training data in a word."""
    if loaded is None:
        return "No model."
    names = loaded.class_names
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    classes = f"Knows {shown}" if len(names) <= 6 else f"Knows {len(names)} classes ({shown})"
    tc = loaded.train_config
    if (loaded.checkpoint is not None and loaded.checkpoint.source == "facebookresearch/detr"
            and names == list(COCO_CLASS_NAMES)):
        return f"{classes} · trained on COCO photos (official weights)"
    if tc is not None and list(tc.data.classes) == names:
        d = tc.data
        step = loaded.trained.step if loaded.trained is not None else (
            loaded.checkpoint.step if loaded.checkpoint is not None else 0)
        return (f"{classes} · trained on toy shapes ({d.image_size}×{d.image_size}, {d.min_objects}–"
                f"{d.max_objects} shapes{f', {step} steps' if step else ''})")
    if loaded.source == "untrained model":
        return f"{classes} · untrained: its boxes mean nothing yet"
    return f"{classes} · training data not recorded"


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


# --- the panel ---------------------------------------------------------------------------------

ASSUMED_SETTINGS_KEY = "set_in_window"  # Checkpoint.extra: settings the user set for what the file did not say


def heads_text(loaded: LoadedModel | None) -> str:
    """"heads: 8" and, for a file that does not say its head count, "(assumed)" or "(set by you)"."""
    if loaded is None:
        return ""
    heads = loaded.model.config.nheads
    ckpt = loaded.checkpoint
    if ckpt is not None and "nheads" in ckpt.assumptions:
        return f"heads: {heads} (assumed: the file does not say)"
    if ckpt is not None and "nheads" in ckpt.extra.get(ASSUMED_SETTINGS_KEY, {}):
        return f"heads: {heads} (set by you: the file does not say)"
    return f"heads: {heads}"


def head_count_unknown(loaded: LoadedModel | None) -> bool:
    """The file does not hold the head count (a weights-only official file): it can be set."""
    ckpt = loaded.checkpoint if loaded is not None else None
    return ckpt is not None and ("nheads" in ckpt.assumptions or "nheads" in ckpt.extra.get(ASSUMED_SETTINGS_KEY, {}))


def architecture_text(loaded: LoadedModel | None) -> str:
    if loaded is None:
        return "No model."
    cfg = loaded.model.config
    # a file and where it came from; a model without a file is named by where it came from, once
    name = f"{loaded.path.name} ({loaded.source})" if loaded.path is not None else loaded.source
    family = describe(cfg)
    backbone = (family["backbone"] if cfg.backbone == "transformers" else cfg.backbone) + (
        " (DC5)" if cfg.dilation else "")
    params = sum(p.numel() for p in loaded.model.parameters())
    paper = f" · {family['paper']}" if family["paper"] else ""
    return (f"{name}\n{family['family']}{paper}\n{backbone} · d_model {cfg.d_model} · {heads_text(loaded)} · "
            f"{cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers · {cfg.num_queries} queries · "
            f"{cfg.num_classes} classes · {params / 1e6:.1f} M parameters")


class ModelInfoPanel(QWidget):
    """What the open model is, and what its file did not say. A weights-only official file gives
    no head count (the shapes are the same for any): the panel says 8 was assumed and offers a
    spin box to set the right one, which reopens the model (``reopenRequested({"nheads": n})``)."""

    reopenRequested = Signal(dict)

    def __init__(self, state: AppState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.summary = QLabel("No model.")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.knowledge = QLabel("")  # the classes and training data, in full (the Queries panel has a line)
        self.knowledge.setWordWrap(True)
        self.knowledge.setStyleSheet("QLabel { color: #9aa0a6; }")
        self.heads = QSpinBox()
        self.heads.setRange(1, 64)
        self.heads.setToolTip("Attention heads: the weights have the same shapes for any head count that divides "
                              "d_model, so a file without its settings cannot say; the reference's default is 8")
        self.heads_hint = QLabel("")
        self.heads_hint.setWordWrap(True)
        self.apply_heads = QPushButton("Reopen with this head count")
        self.apply_heads.clicked.connect(self.request_heads)
        self.heads_row = QWidget()
        row = QHBoxLayout(self.heads_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Heads:"))
        row.addWidget(self.heads)
        row.addWidget(self.apply_heads)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.knowledge)
        layout.addWidget(self.heads_hint)
        layout.addWidget(self.heads_row)
        layout.addStretch(1)
        state.modelChanged.connect(self.show_model)
        self.show_model(state.model)

    def show_model(self, loaded: LoadedModel | None) -> None:
        self.summary.setText(architecture_text(loaded))
        self.knowledge.setText(knowledge_text(loaded) if loaded is not None else "")
        unknown = head_count_unknown(loaded)
        self.heads_row.setVisible(unknown)
        self.heads_hint.setVisible(unknown)
        if unknown:
            assert loaded is not None
            heads = loaded.model.config.nheads
            self.heads.setValue(heads)
            how = ("assumed (the reference's default)" if "nheads" in loaded.checkpoint.assumptions
                   else "the count you set")
            self.heads_hint.setText(f"The file does not say how many attention heads the model has: {heads} is {how}. "
                                    "If its predictions look wrong, set the count it was trained with.")

    def request_heads(self) -> None:
        loaded = self.state.model
        if loaded is None:
            return
        d_model, n = loaded.model.config.d_model, self.heads.value()
        if d_model % n:
            divisors = ", ".join(str(k) for k in range(1, min(d_model, 64) + 1) if d_model % k == 0)
            self.heads_hint.setText(f"{n} heads do not divide d_model {d_model}: choose one of {divisors}.")
            return
        self.reopenRequested.emit({"nheads": n})
