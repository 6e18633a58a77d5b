"""Named recipes: a model config plus a training config.

- ``vanilla``: the paper's recipe scaled down for toy data: softmax classification with a
  no-object weight, Hungarian matching, L1 + GIoU, auxiliary losses, learned queries, AdamW at
  1e-4 with a step drop, gradient clip 0.1, dropout 0.1. The honest baseline.
- ``fast``: the same kind of detector, with two decoder layers instead of four, trained with the
  levers that make it learn toy shapes in about two minutes on a laptop CPU (see README):
  anchor-box queries refined layer by layer with look-forward-twice, whose anchors are each
  image's best boxes of a dense one-to-many head on the encoder (DINO's query selection), an
  extra one-to-one query group, focal classification, a 50x higher learning rate with warm-up,
  a hold and a linear decay over the second half, and bfloat16 autocast where the CPU has it.
  Denoising groups and the SMCA spatial prior stay available as levers.
- ``deformable``: Deformable DETR with iterative box refinement, on the toy net's three stages.
- ``dino``: DINO on top of ``deformable``: anchor boxes refined per layer, contrastive denoising
  (positive and negative copies of each object at two noise scales, the negatives trained as
  "no object"), mixed query selection (each image's anchors are the encoder's best proposals,
  the content stays learned) and look-forward-twice.
- ``rt_detr``: RT-DETR's recipe on the deformable decoder: the hybrid encoder (attention within
  the top level only, convolutional fusion across levels), IoU-aware query selection (the
  encoder's scores trained with varifocal loss towards each box's IoU, then its top-k tokens
  start the queries: their boxes the anchors, their features the content) and varifocal
  classification loss.
- ``r18``: the throughput benchmark's ResNet-18 configuration.

:func:`preset_papers` says, for each preset, which paper each of its levers comes from.

Any setting can be overridden by name (``apply_overrides``), which is how the CLI and the
training panel switch individual levers on and off.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from detr_core.config import DatasetConfig, DETRConfig, LossConfig, ToyDataConfig, TrainConfig
from detr_core.precision import cpu_precision

# The scaled-down detector both toy presets train: a small conv net at stride 16 (an 8x8 grid on
# 128 px images), one encoder layer, four decoder layers, d_model 64, 20 queries.
TOY_MODEL = dict(
    backbone="tiny",
    tiny_stride=16,
    tiny_width=16,
    d_model=64,
    nheads=4,
    num_encoder_layers=1,
    num_decoder_layers=4,
    dim_feedforward=256,
    num_queries=20,
    num_classes=3,
    image_min_size=128,
    image_max_size=256,
)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively (see :mod:`detr_core.precision`)."""
    return cpu_precision().bf16


def vanilla() -> tuple[DETRConfig, TrainConfig]:
    model = DETRConfig(**TOY_MODEL, dropout=0.1)
    train = TrainConfig(
        lr=1e-4,
        lr_backbone=1e-4,  # the toy backbone starts from scratch, so it trains at the full rate
        weight_decay=1e-4,
        batch_size=32,
        clip_max_norm=0.1,
        steps=0,
        max_seconds=600.0,
        schedule="step",
        lr_drop=2 / 3,
        bf16=cpu_has_fast_bf16(),  # an implementation speed-up, the same for both presets
        data=ToyDataConfig(),
        loss=LossConfig(),
    )
    return model, train


def fast() -> tuple[DETRConfig, TrainConfig]:
    model = DETRConfig(
        **{**TOY_MODEL, "num_decoder_layers": 2},  # two layers learn as much per step as four, faster
        dropout=0.0,
        query_type="anchor",  # 4-D anchor boxes, refined layer by layer
        look_forward_twice=True,
        num_query_groups=2,  # one extra one-to-one group during training (Group DETR)
        dn_groups=0,  # denoising did not pay for its cost within two minutes here (README)
        classifier="focal",
        dense_aux=True,  # dense one-to-many head on the encoder
        query_select=True,  # each image's anchors: the dense head's best boxes (DINO)
    )
    train = TrainConfig(
        lr=5e-3,
        lr_backbone=5e-3,
        weight_decay=1e-4,
        batch_size=32,
        clip_max_norm=0.5,
        steps=0,
        max_seconds=120.0,
        schedule="wsd",  # warm up, hold, then decay linearly over the last half
        decay_fraction=0.5,
        warmup_steps=100,
        bf16=cpu_has_fast_bf16(),
        # focal classes count double; GIoU weighs 3 (not 2) in matching and loss: AP rewards tight boxes
        # the dense head's loss counts double: its boxes are where the queries start
        loss=LossConfig(cost_class=2.0, weight_class=2.0, cost_giou=3.0, weight_giou=3.0, weight_dense=2.0),
    )
    return model, train


def r18() -> tuple[DETRConfig, TrainConfig]:
    model = DETRConfig(
        backbone="resnet18", d_model=128, nheads=4, num_encoder_layers=2, num_decoder_layers=2,
        dim_feedforward=512, num_queries=20, num_classes=3, dropout=0.1,
        image_min_size=128, image_max_size=256,
    )
    return model, TrainConfig(lr=1e-4, lr_backbone=1e-5, batch_size=16, steps=2000)


def deformable() -> tuple[DETRConfig, TrainConfig]:
    """Deformable DETR on toy shapes: the toy conv net at strides 8, 16 and 32 (16x16, 8x8 and 4x4
    on 128 px) plus one extra stride-64 level (2x2), four sampling points per head and level,
    iterative box refinement, focal classification; the optimiser of ``fast``."""
    model = DETRConfig(
        **{**TOY_MODEL, "tiny_stride": 32},
        dropout=0.0,
        classifier="focal",
        attention="deformable",
        num_feature_levels=4,
        enc_n_points=4,
        dec_n_points=4,
        with_box_refine=True,
    )
    _, train = fast()
    return model, dataclasses.replace(train, lr=2e-3, lr_backbone=2e-3)


def dino() -> tuple[DETRConfig, TrainConfig]:
    """``deformable`` with DINO's levers; the optimiser of ``deformable``. Sized for the CPU as
    ``fast`` is: two decoder layers, and two levels (strides 16 and 32: ``fast``'s 8x8 grid on
    128 px, and 4x4): 0.20 CPU-seconds per step of 32 images on one thread, as ``fast`` (0.19),
    against 0.70 with four levels and four layers (measured 2026-12-06, a shared machine)."""
    model, train = deformable()
    model = dataclasses.replace(
        model,
        num_decoder_layers=2,
        num_feature_levels=2,
        query_type="anchor",  # 4-D anchor boxes (DAB-DETR), refined per layer
        look_forward_twice=True,
        query_select=True,  # mixed query selection: positions from the encoder's top-k, content learned
        dn_groups=2,  # contrastive denoising: 2 groups of a positive and a negative copy of each object
        dn_contrastive=True,
        dn_label_noise=0.2,
        dn_box_noise=0.4,
    )
    return model, train


def rt_detr() -> tuple[DETRConfig, TrainConfig]:
    """RT-DETR's levers on the deformable decoder: three levels (strides 8, 16, 32), one AIFI
    layer on the coarsest, CCFM fusion; the optimiser of ``deformable``."""
    model, train = deformable()
    model = dataclasses.replace(
        model,
        num_decoder_layers=2,  # as fast and dino
        hybrid_encoder=True,
        num_feature_levels=3,  # RT-DETR fuses S3, S4, S5: no extra strided level
        query_type="anchor",
        look_forward_twice=True,
        query_select=True,  # IoU-aware: the encoder's scores learn the IoU through the varifocal loss
        query_content="encoder",  # the queries' content: the selected tokens' features (learn_query_content=False)
    )
    return model, dataclasses.replace(train, loss=dataclasses.replace(train.loss, varifocal=True))


PRESETS = {"vanilla": vanilla, "fast": fast, "r18": r18, "deformable": deformable, "dino": dino,
           "rt_detr": rt_detr}

# Which paper each lever comes from, by config field and the value that turns it on (the panel
# shows these for a preset, see preset_papers)
LEVER_PAPERS: tuple[tuple[str, Any, str, str], ...] = (
    ("attention", "deformable", "deformable attention", "Deformable DETR (Zhu et al. 2021)"),
    ("with_box_refine", True, "box refinement per layer", "Deformable DETR (Zhu et al. 2021)"),
    ("two_stage", True, "two-stage proposals", "Deformable DETR (Zhu et al. 2021)"),
    ("hybrid_encoder", True, "hybrid encoder (AIFI + CCFM)", "RT-DETR (Zhao et al. 2024)"),
    ("query_type", "anchor", "anchor-box queries", "DAB-DETR (Liu et al. 2022)"),
    ("dn_groups", "> 0", "denoising queries", "DN-DETR (Li et al. 2022)"),
    ("dn_contrastive", True, "contrastive denoising", "DINO (Zhang et al. 2023)"),
    ("query_select", True, "query selection", "DINO (Zhang et al. 2023)"),
    ("query_content", "encoder", "query content from the encoder", "RT-DETR (Zhao et al. 2024)"),
    ("look_forward_twice", True, "look forward twice", "DINO (Zhang et al. 2023)"),
    ("num_query_groups", "> 1", "query groups", "Group DETR (Chen et al. 2023)"),
    ("dense_aux", True, "dense one-to-many head", "Co-DETR (Zong et al. 2023)"),
    ("spatial_prior", True, "spatial prior", "SMCA (Gao et al. 2021)"),
    ("classifier", "focal", "focal classification", "Focal loss (Lin et al. 2017)"),
    ("loss.varifocal", True, "varifocal loss (IoU-aware query selection)", "RT-DETR (Zhao et al. 2024)"),
    ("loss.iou_aware", True, "IoU-aware classification", "Generalized focal loss (Li et al. 2020)"),
)


def preset_papers(name: str) -> str:
    """One line: the papers the preset ``name``'s levers come from, each with its levers, e.g.
    ``"DETR (Carion et al. 2020); Deformable DETR (Zhu et al. 2021): deformable attention, box
    refinement per layer; ..."``. Raises ValueError for an unknown preset."""
    model, train = preset(name)
    by_paper: dict[str, list[str]] = {}
    for field, on, lever, paper in LEVER_PAPERS:
        value = getattr(train.loss, field[5:]) if field.startswith("loss.") else getattr(model, field)
        if on == "> 0":
            used = value > 0
        elif on == "> 1":
            used = value > 1
        else:
            used = value == on
        if field == "look_forward_twice":
            used = used and model.query_type == "anchor"  # it acts on refined anchor boxes only
        if used:
            by_paper.setdefault(paper, []).append(lever)
    parts = [f"{paper}: {', '.join(levers)}" for paper, levers in by_paper.items()]
    return "; ".join(["DETR (Carion et al. 2020)" + ("" if parts else ": the paper's recipe")] + parts)


def preset(name: str) -> tuple[DETRConfig, TrainConfig]:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


def _parse_value(text: str, current: Any, optional: bool = False) -> Any:
    if optional and text.lower() in ("none", "off", ""):
        return None
    if isinstance(current, bool):
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected on/off, got {text!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        return _parse_int(text)
    if isinstance(current, float):
        return _parse_float(text)
    if current is None:
        if text.lower() in ("none", ""):
            return None
        try:
            return _parse_float(text) if "." in text or "e" in text.lower() else _parse_int(text)
        except ValueError:
            return text
    if isinstance(current, tuple):
        return tuple(x.strip() for x in text.split(",") if x.strip())
    return text


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not value.is_integer():
        raise ValueError(f"expected a whole number, got {text!r}")
    return int(value)  # "1e3"


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def apply_overrides(
    model: DETRConfig, train: TrainConfig, overrides: list[str] | dict[str, Any]
) -> tuple[DETRConfig, TrainConfig]:
    """Apply ``name=value`` settings. A name is a field of DETRConfig, TrainConfig,
    LossConfig (``loss.``), ToyDataConfig (``data.``) or DatasetConfig (``dataset.``); the prefix may be left out when the
    name is unique. Returns new configs (validated); unknown names raise ValueError."""
    items = list(overrides.items()) if isinstance(overrides, dict) else [_split(o) for o in overrides]
    optional = {
        section: {f.name for f in dataclasses.fields(cls) if "None" in str(f.type)}
        for section, cls in (("model", DETRConfig), ("train", TrainConfig), ("loss", LossConfig),
                             ("data", ToyDataConfig), ("dataset", DatasetConfig))
    }
    sections: dict[str, dict[str, Any]] = {
        "model": dataclasses.asdict(model),
        "train": {k: v for k, v in dataclasses.asdict(train).items() if k not in ("loss", "data", "dataset")},
        "loss": dataclasses.asdict(train.loss),
        "data": dataclasses.asdict(train.data),
        "dataset": dataclasses.asdict(train.dataset),
    }
    for name, value in items:
        if "." in name:
            section, key = name.split(".", 1)
            if section not in sections or key not in sections[section]:
                raise ValueError(f"unknown setting {name!r}")
        else:
            owners = [s for s, fields in sections.items() if name in fields]
            if not owners:
                raise ValueError(f"unknown setting {name!r}")
            if len(owners) > 1:
                raise ValueError(f"ambiguous setting {name!r}: say {' or '.join(o + '.' + name for o in owners)}")
            section, key = owners[0], name
        current = sections[section][key]
        try:
            parsed = _parse_value(value, current, key in optional[section]) if isinstance(value, str) else value
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
        sections[section][key] = parsed
    new_model = DETRConfig(**sections["model"])
    new_train = TrainConfig(
        **sections["train"], loss=LossConfig(**sections["loss"]), data=ToyDataConfig(**sections["data"]),
        dataset=DatasetConfig(**sections["dataset"]),
    )
    return new_model, new_train


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ValueError(f"expected name=value, got {item!r}")
    name, value = item.split("=", 1)
    return name.strip(), value.strip()
