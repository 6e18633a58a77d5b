"""Typed configuration: the model, the loss, the toy data, the dataset and training.

Every dataclass here is saved inside each checkpoint as a plain dict (``asdict``) and rebuilt
with :func:`config_from_dict`, which refuses unknown keys so an incompatible file is named as
such instead of silently misread.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from detr_core.model.registry import check_config

T = TypeVar("T")


def check_number(
    name: str, value: Any, low: float | None = None, high: float | None = None, *,
    above: bool = False, whole: bool = False, none_ok: bool = False,
) -> None:
    """Raise a one-line ValueError unless ``value`` is a finite number in range: at least ``low``
    (more than it with ``above``), at most ``high``; a whole number with ``whole``."""
    if value is None and none_ok:
        return
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if low is not None and (value <= low if above else value < low):
        if above and low == 0:
            raise ValueError(f"{name} must be positive, got {value}")
        raise ValueError(f"{name} must be {'more than' if above else 'at least'} {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be at most {high}, got {value}")


# "transformers": the backbone a wrapped family's transformers config names (model/hf_families/)
BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "resnet101", "resnet", "transformers")
RESNET_BLOCKS = ("bottleneck", "basic")
QUERY_TYPES = ("learned", "anchor")
QUERY_CONTENTS = ("learned", "encoder")  # DETRConfig.query_content
CLASSIFIERS = ("softmax", "focal")
SCHEDULES = ("step", "cosine", "constant", "wsd")
POSITION_EMBEDDINGS = ("sine", "learned")  # DETRConfig.position_embedding
POSITION_ADDED = ("every_layer", "input")  # DETRConfig.position_added
MATCHERS = ("hungarian", "greedy")  # LossConfig.matcher


@dataclass
class DETRConfig:
    """The architecture. Defaults are the paper's DETR-R50 (the official checkpoint's shapes)."""

    backbone: str = "resnet50"
    tiny_stride: int = 8  # "tiny" backbone only: 8 (16x16 grid on 128 px) or 16 (8x8)
    tiny_width: int = 32  # "tiny" backbone only: channels of its first layer (then x2, x4)
    pretrained_backbone: bool = True  # ImageNet weights if already in the torch cache; never downloaded
    train_backbone: bool = True  # False freezes the whole backbone (the reference's lr_backbone == 0)
    d_model: int = 256
    nheads: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_queries: int = 100
    num_classes: int = 91  # K real classes; the softmax head has K + 1 outputs, the last is "no object"
    pre_norm: bool = False
    dilation: bool = False  # ResNets: the last stage dilated instead of strided (DC5, output stride 16)
    # backbone "resnet": a ResNet of any size (files from other libraries), torchvision's module
    # names with these stage depths, widths (stem, then each stage's output channels) and blocks
    resnet_depths: tuple[int, ...] = ()
    resnet_widths: tuple[int, ...] = ()
    resnet_block: str = "bottleneck"
    decoder_self_attention: bool = True
    aux_loss: bool = True
    # Hugging Face DETR saved with ``auxiliary_loss=True``: its decoder's final LayerNorm also
    # normalises every layer's output before the next layer takes it (and the last layer's output
    # is normalised twice). transformers does this whenever that flag is set, so a file fine-tuned
    # there predicts through it; off in the reference and for models trained here.
    decoder_norm_between_layers: bool = False
    # Levers for fast convergence (all off in the paper's recipe).
    query_type: str = "learned"  # "learned": DETR's query embeddings; "anchor": learned 4-D boxes
    look_forward_twice: bool = True  # anchor queries: box loss of layer l also refines layer l-1
    num_query_groups: int = 1  # Group DETR: extra one-to-one groups during training only
    dn_groups: int = 0  # DN-DETR denoising groups during training (0 = off); needs anchor queries
    dn_label_noise: float = 0.2  # fraction of denoising labels flipped to a random class
    dn_box_noise: float = 0.4  # box noise scale (fraction of the box size)
    # DINO's contrastive denoising: each group also holds a negative copy of every object, noised
    # between one and two box noise scales and trained as "no object". Needs dn_groups > 0.
    dn_contrastive: bool = False
    classifier: str = "softmax"  # "softmax" with a no-object class, or "focal" (sigmoid per class)
    dense_aux: bool = False  # Co-DETR-style dense one-to-many head on the encoder (its loss: training only)
    # DINO's mixed query selection: anchor queries start from the best-scoring encoder boxes (per
    # image) instead of learned boxes; their content stays learned. The boxes: the dense head's
    # (dense family, needs dense_aux) or one proposal per encoder token (deformable family).
    query_select: bool = False
    # Where selected queries' content (the decoder's first input) comes from, with query_select on
    # the deformable family: "learned" (DINO's mixed query selection: one learned vector per query)
    # or "encoder" (RT-DETR's default: the selected tokens' projected encoder features, detached)
    query_content: str = "learned"
    # SMCA: the decoder's cross-attention favours tokens near each query's current box (a Gaussian
    # added to its logits, learned width per layer and head). Needs anchor queries.
    spatial_prior: bool = False
    # Deformable DETR (Zhu et al. 2021): multi-scale deformable attention in the encoder and in the
    # decoder's cross-attention, around learned reference points (needs classifier="focal")
    attention: str = "dense"  # the model family: "dense" (DETR) or "deformable" (see model/registry.py)
    num_feature_levels: int = 4  # deformable: the last min(3, n) backbone stages + strided extra levels
    enc_n_points: int = 4  # deformable: sampling points per head and level in the encoder
    dec_n_points: int = 4  # deformable: ... and in the decoder's cross-attention
    with_box_refine: bool = False  # deformable: each decoder layer refines the previous layer's box
    two_stage: bool = False  # deformable: queries start from the encoder's best-scoring proposals
    # The image tokens' positional encoding (DETR's Table 3 study): "sine" (fixed, the paper's) or
    # "learned" (one embedding per row and per column, up to 50 each); added to the queries and keys
    # of every attention layer ("every_layer", the paper's), or once to the encoder's input ("input")
    position_embedding: str = "sine"
    position_added: str = "every_layer"
    # RT-DETR's hybrid encoder (deformable family): attention within the top level only (AIFI,
    # num_encoder_layers layers), then convolutional fusion across the levels (CCFM)
    hybrid_encoder: bool = False
    # Inference-time resizing: shorter side to image_min_size, longer side at most image_max_size.
    image_min_size: int = 800
    image_max_size: int = 1333
    # ... or, where both are set, every image stretched to exactly image_height x image_width, its
    # aspect ratio not kept: what RT-DETR's image processor ({"height", "width"}) and the RT-DETR and
    # D-FINE authors' own pipelines do (image_min_size / image_max_size then hold the smaller and
    # the larger of the two, for what reads them)
    image_height: int = 0
    image_width: int = 0
    # Families wrapped from transformers (RT-DETR, Conditional DETR ..., see model/hf_families/):
    # their ``config.json`` as transformers wrote it, from which the family builds its model
    transformers_config: dict[str, Any] = field(default_factory=dict)
    # ... and what of the folder's preprocessor_config.json changes the pixels the model sees
    # ({"do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std"} where it says; empty: the
    # family's processor's defaults; see formats/hf_processor.py)
    transformers_processor: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose one of {BACKBONES}")
        if self.query_type not in QUERY_TYPES:
            raise ValueError(f"unknown query_type {self.query_type!r}; choose one of {QUERY_TYPES}")
        if self.classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {self.classifier!r}; choose one of {CLASSIFIERS}")
        if self.position_embedding not in POSITION_EMBEDDINGS:
            raise ValueError(f"unknown position_embedding {self.position_embedding!r}; "
                             f"choose one of {POSITION_EMBEDDINGS}")
        if self.position_added not in POSITION_ADDED:
            raise ValueError(f"unknown position_added {self.position_added!r}; choose one of {POSITION_ADDED}")
        self.resnet_depths = tuple(self.resnet_depths)
        self.resnet_widths = tuple(self.resnet_widths)
        if self.backbone == "resnet":
            if len(self.resnet_depths) != 4 or len(self.resnet_widths) != 5:
                raise ValueError("backbone 'resnet' needs 4 resnet_depths and 5 resnet_widths (stem + 4 stages)")
            for v in self.resnet_depths + self.resnet_widths:
                check_number("resnet_depths and resnet_widths", v, 1, whole=True)
        if self.dilation and (self.backbone in ("resnet18", "resnet34") or
                              (self.backbone == "resnet" and self.resnet_block == "basic")):
            raise ValueError("dilation needs a bottleneck ResNet (resnet50, resnet101): basic blocks cannot dilate")
        if self.resnet_block not in RESNET_BLOCKS:
            raise ValueError(f"unknown resnet_block {self.resnet_block!r}; choose one of {RESNET_BLOCKS}")
        if self.tiny_stride not in (8, 16, 32):
            raise ValueError("tiny_stride must be 8, 16 or 32")
        if self.d_model % self.nheads != 0:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by nheads ({self.nheads})")
        if self.d_model % 2 != 0:
            raise ValueError("d_model must be even (half of it encodes y, half x)")
        for name in ("num_queries", "num_classes", "num_decoder_layers", "num_query_groups", "nheads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.num_encoder_layers < 0 or self.dn_groups < 0:
            raise ValueError("layer and group counts cannot be negative")
        if self.spatial_prior and self.query_type != "anchor":
            raise ValueError("spatial_prior needs query_type='anchor'")
        if self.query_select and self.query_type != "anchor":
            raise ValueError("query_select needs query_type='anchor'")
        if self.query_content not in QUERY_CONTENTS:
            raise ValueError(f"unknown query_content {self.query_content!r}; choose one of {QUERY_CONTENTS}")
        if self.query_content == "encoder" and not self.query_select:
            raise ValueError("query_content='encoder' needs query_select=True (the content is the selected tokens')")
        if self.dn_contrastive and self.dn_groups == 0:
            raise ValueError("dn_contrastive needs denoising groups (dn_groups > 0)")
        if self.dn_groups > 0 and self.query_type != "anchor":
            raise ValueError("denoising queries (dn_groups > 0) need query_type='anchor'")
        for name in ("d_model", "dim_feedforward", "tiny_width", "image_min_size"):
            check_number(name, getattr(self, name), 1, whole=True)
        check_number("image_max_size", self.image_max_size, self.image_min_size, whole=True)
        if (self.image_height > 0) != (self.image_width > 0):
            raise ValueError("image_height and image_width are set together (a fixed size) or both left at 0")
        for name in ("image_height", "image_width"):
            check_number(name, getattr(self, name), 0, whole=True)
        check_number("dropout", self.dropout, 0, 0.99)
        check_number("dn_label_noise", self.dn_label_noise, 0, 1)
        check_number("dn_box_noise", self.dn_box_noise, 0)
        check_config(self)  # the family's own limits (detr_core/model/registry.py)

    @property
    def fixed_input_size(self) -> tuple[int, int] | None:
        """(height, width) every image is stretched to, or None (the shorter-side rule)."""
        return (self.image_height, self.image_width) if self.image_height and self.image_width else None

    @property
    def num_logits(self) -> int:
        """Width of the class head: K + 1 for softmax (with no-object), K for focal."""
        return self.num_classes + 1 if self.classifier == "softmax" else self.num_classes


@dataclass
class LossConfig:
    """Hungarian matching costs and loss weights (the paper's defaults)."""

    cost_class: float = 1.0
    cost_bbox: float = 5.0
    cost_giou: float = 2.0
    weight_class: float = 1.0
    weight_bbox: float = 5.0
    weight_giou: float = 2.0
    no_object_weight: float = 0.1  # softmax only: class weight of the no-object class (eos_coef)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    iou_aware: bool = False  # focal only: a matched query's class target is its box IoU (quality focal loss)
    # focal only: varifocal loss (Zhang et al. 2021, as RT-DETR trains): a matched query's target is
    # its box IoU, weighted by it; the rest are pushed down with weight varifocal_alpha * p^gamma
    varifocal: bool = False
    varifocal_alpha: float = 0.75
    weight_dn: float = 1.0  # multiplies every denoising loss part
    weight_dense: float = 1.0  # multiplies every dense auxiliary loss part
    # "hungarian": the assignment of least total cost (the paper's); "greedy": the cheapest
    # (query, object) pair first, then the cheapest among those left, and so on (a study lever)
    matcher: str = "hungarian"

    def __post_init__(self) -> None:
        if self.matcher not in MATCHERS:
            raise ValueError(f"unknown matcher {self.matcher!r}; choose one of {MATCHERS}")
        for f in dataclasses.fields(self):
            if f.name not in ("iou_aware", "varifocal", "matcher"):
                check_number(f.name, getattr(self, f.name), 0)
        check_number("focal_alpha", self.focal_alpha, 0, 1)
        if self.varifocal and self.iou_aware:
            raise ValueError("choose one of varifocal and iou_aware (both set a matched query's target to its IoU)")


@dataclass
class ToyDataConfig:
    """The toy-shapes generator."""

    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 6
    classes: tuple[str, ...] = ("rectangle", "ellipse", "triangle")
    min_side: float = 0.12  # fraction of the image side
    max_side: float = 0.42
    max_overlap: float = 0.25  # largest IoU allowed between two objects' boxes
    noise: float = 0.03  # std of pixel noise, in [0, 1] colour units

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)
        known = {"rectangle", "ellipse", "triangle"}
        bad = [c for c in self.classes if c not in known]
        if bad or not self.classes:
            raise ValueError(f"toy classes must be a non-empty subset of {sorted(known)}, got {bad}")
        for name in ("min_side", "max_side"):
            check_number(name, getattr(self, name), 0, 1)
        check_number("image_size", self.image_size, 16, 4096, whole=True)
        check_number("min_objects", self.min_objects, 0, whole=True)
        check_number("max_objects", self.max_objects, 0, 100, whole=True)
        check_number("noise", self.noise, 0, 1)
        check_number("max_overlap", self.max_overlap, 0, 1)
        if not 0 <= self.min_objects <= self.max_objects:
            raise ValueError("need 0 <= min_objects <= max_objects")
        if not 0 < self.min_side <= self.max_side <= 1:
            raise ValueError("need 0 < min_side <= max_side <= 1")


AUGMENTS = ("none", "light", "reference")  # DatasetConfig.augment


@dataclass
class DatasetConfig:
    """Where training data comes from and how file-backed images are augmented.

    ``source`` is ``"toy"`` (the generator, configured by :class:`ToyDataConfig`), ``"coco:PATH"``,
    ``"voc:PATH"`` or ``"yolo:PATH"`` (see :func:`detr_core.data.sources.open_dataset`). Augmentation follows the
    reference recipe with sizes scaled down for CPUs (the reference: scales 480..800, max 1333,
    crop resize 400/500/600, crop 384..600). Evaluation resizes the shorter side to
    ``max(scales)``, the longer at most ``max_size``.
    """

    source: str = "toy"
    train_split: str = ""  # "" = the layout's default (COCO train2017, VOC train, YOLO train)
    val_split: str = ""  # "" = COCO val2017, VOC val, YOLO val
    scales: tuple[int, ...] = (96, 112, 128)  # random shorter side, pixels
    max_size: int = 256  # longer side at most, pixels
    crop_resize: tuple[int, ...] = (100, 125, 150)  # shorter side before the random crop
    crop_min: int = 96  # random crop side, pixels
    crop_max: int = 150
    hflip: float = 0.5  # probability of a horizontal flip
    # "light": the flip, at the evaluation size (shorter side max(scales)); "reference": the whole
    # recipe above (multi-scale, random crops), made for hundreds of epochs: in a two-minute run
    # on a 2000-image folder it held AP at 0.002 where "light" learned (README); "none": resize only
    augment: str = "light"
    num_workers: int = 0  # DataLoader worker processes for file datasets (0: in the training process)

    def __post_init__(self) -> None:
        self.scales = tuple(int(s) for s in self.scales)
        self.crop_resize = tuple(int(s) for s in self.crop_resize)
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, not {self.augment!r}")
        if not self.scales or min(self.scales) < 16 or not self.crop_resize or min(self.crop_resize) < 16:
            raise ValueError("scales and crop_resize need at least one size, each at least 16 pixels")
        if self.max_size < max(self.scales):
            raise ValueError(f"max_size ({self.max_size}) must be at least the largest scale ({max(self.scales)})")
        if not 1 <= self.crop_min <= self.crop_max:
            raise ValueError("need 1 <= crop_min <= crop_max")
        if not 0 <= self.hflip <= 1:
            raise ValueError("hflip is a probability, between 0 and 1")
        if self.num_workers < 0:
            raise ValueError("num_workers cannot be negative")

    @property
    def is_toy(self) -> bool:
        return self.source == "toy"


@dataclass
class TrainConfig:
    """Optimisation. Defaults follow the reference (AdamW, lr 1e-4, backbone 1e-5, clip 0.1)."""

    lr: float = 1e-4
    lr_backbone: float = 1e-5
    lr_linear_proj_mult: float = 0.1  # Deformable DETR: sampling offsets and reference points at lr x this
    weight_decay: float = 1e-4
    batch_size: int = 16
    clip_max_norm: float = 0.1
    steps: int = 2000
    max_seconds: float | None = None  # stop after this much training time (whichever comes first)
    schedule: str = "step"  # "step": x0.1 at lr_drop; "cosine"; "constant"; "wsd" (see decay_fraction)
    lr_drop: float = 2 / 3  # step schedule: fraction of training after which lr drops 10x
    decay_fraction: float = 0.2  # wsd ("warm-up, stable, decay"): linear decay over this last fraction
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01  # cosine schedule floor, as a fraction of lr
    seed: int = 42
    threads: int | None = None  # torch CPU threads; None leaves torch's default
    device: str = "auto"  # "auto" picks CUDA, then MPS, then CPU
    bf16: bool = False  # autocast to bfloat16 (fast on CPUs with AMX, and on recent GPUs)
    eval_every: int = 0  # steps between evaluations on the held-out toy split (0 = never)
    eval_images: int = 100
    data: ToyDataConfig = field(default_factory=ToyDataConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        check_number("lr", self.lr, 0, above=True)
        for name in ("lr_backbone", "lr_linear_proj_mult", "weight_decay", "clip_max_norm"):
            check_number(name, getattr(self, name), 0)
        for name in ("lr_drop", "decay_fraction", "min_lr_ratio"):
            check_number(name, getattr(self, name), 0, 1)
        check_number("batch_size", self.batch_size, 1, whole=True)
        for name in ("steps", "warmup_steps", "eval_every"):
            check_number(name, getattr(self, name), 0, whole=True)
        check_number("eval_images", self.eval_images, 1, whole=True)
        check_number("seed", self.seed, 0, 2**63 - 1, whole=True)
        check_number("threads", self.threads, 1, whole=True, none_ok=True)
        check_number("max_seconds", self.max_seconds, 0, above=True, none_ok=True)
        if not self.steps and self.max_seconds is None:
            raise ValueError("the run has no end: give it steps (more than 0) or max_seconds")


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Rebuild a config dataclass (with nested dataclasses) from ``asdict`` output.

    Missing keys take their defaults (older files); unknown keys raise ``ValueError``.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{cls.__name__}: expected a dict, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        f = fields[name]
        nested = _nested_dataclass(f)
        kwargs[name] = config_from_dict(nested, value) if nested is not None else value
    return cls(**kwargs)


def _nested_dataclass(f: dataclasses.Field) -> type | None:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        factory = f.default_factory  # type: ignore[misc]
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            return factory
    return None


def to_dict(config: Any) -> dict[str, Any]:
    """``asdict`` with tuples turned into lists, so the result holds only JSON-like values."""

    def fix(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [fix(x) for x in v]
        return v

    return fix(dataclasses.asdict(config))


def to_saved_dict(config: Any) -> dict[str, Any]:
    """:func:`to_dict` less every setting at its default (nested configs too): what a checkpoint
    stores. A file that uses no setting newer than a reader then opens in that reader, which fills
    what is missing with the same defaults (:func:`config_from_dict`); a file that uses one still
    names it, and an older reader refuses it by name. This holds while a default never changes:
    tests/data/config_defaults.json pins them, and a test fails on a changed one."""
    saved = to_dict(config)
    defaults = to_dict(type(config)())
    for f in dataclasses.fields(config):
        nested = _nested_dataclass(f)
        if nested is not None:
            saved[f.name] = to_saved_dict(getattr(config, f.name))
        elif saved[f.name] == defaults[f.name]:
            del saved[f.name]
    return saved
