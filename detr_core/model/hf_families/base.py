"""The shared part of every family wrapped from ``transformers``: :class:`WrappedDetector` (an
nn.Module holding transformers' ``*ForObjectDetection`` and answering the project's forward and
capture protocol), the hooks it records with, and opening a ``save_pretrained`` folder.

    model = registry.build_model(config)     # config.attention == "rt_detr", config.transformers_config
    out = model(images, capture=True)        # pred_logits [B, Q, C], pred_boxes [B, Q, 4] cxcywh in [0, 1]
    out["capture"]                           # a ModelCapture, as for the native families

**Registered how.** Each family is one entry in ``detr_core.model.registry.FAMILIES`` (the
family's name in ``DETRConfig.attention``, as for ``dense`` and ``deformable``), so checkpoints,
analyses and views reach it exactly as they reach the native families. What a wrapped family
needs beyond the typed config (transformers' own architecture description) travels in
``DETRConfig.transformers_config``: the ``config.json`` the folder held. The weights are those of
transformers' model under ``detector.``; a checkpoint saved here reopens through the registry.

**Inputs.** The project feeds every model ImageNet-normalized images padded bottom/right with a
mask (:class:`~detr_core.model.nested_tensor.NestedTensor`). :meth:`WrappedDetector.inputs` turns
them into the family's own convention (:class:`FamilySpec`): RT-DETR's processors only rescale
to [0, 1], so the normalization is undone (and padding is 0, as its processor pads); Conditional
and DAB-DETR take the normalized pixels and a ``pixel_mask``. Where the folder's
``preprocessor_config.json`` says otherwise (``do_rescale``, ``rescale_factor``, ``do_normalize``,
``image_mean``, ``image_std``, e.g. DEIMv2's DINOv3 models normalize, its HGNetV2 ones do not; a
processor without rescaling feeds 0-255 pixels), the folder is followed
(``DETRConfig.transformers_processor``; padding stays 0 after normalizing, as the processors pad).
What else of the processor is followed, refused or without effect: :mod:`detr_core.formats.hf_processor`.

**Forward.** transformers' forward runs unchanged; the wrapper reads what it needs with forward
hooks on transformers' modules (attention maps, sampling locations and weights, each decoder
layer's output), which leaves the predictions bit for bit as transformers computes them. Where
transformers does not return every decoder layer's prediction at inference, the family applies
transformers' own heads to the layer outputs as transformers' auxiliary loss does. Dense maps need
eager attention: the dense families run with it (set when built).

**Fields.** transformers follows every field of the config; the wrapper refuses by name those it
could not capture faithfully (``FamilySpec.refused``) and those that cannot be built offline
(a backbone named by Hub id, a timm backbone without timm).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_core.checkpoint_types import Checkpoint, CheckpointError
from detr_core.config import DETRConfig
from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD
from detr_core.formats.hf_processor import ImageSize, channels, open_processor, pixel_scale
from detr_core.model.capture_protocol import AttentionCapture, DenseAttention, ModelCapture
from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list

INSTALL_HINT = "uv sync --extra hf"
TRAIN_PROBLEM_TEMPLATE = ("{title} is opened here, not trained: the explorer wraps transformers' model to show "
                          "it; train it with transformers or the authors' code")
EXPORT_PROBLEM = ("a family wrapped from transformers (its Hugging Face folder is the format to keep; "
                  "the explorer's own checkpoint holds it too)")


@dataclass(frozen=True)
class FamilySpec:
    """What the seam needs to know of a wrapped family."""

    name: str  # the registry's name (DETRConfig.attention), e.g. "rt_detr"
    model_type: str  # transformers' config.json model_type, e.g. "rt_detr" or "dab-detr"
    config_class: str  # transformers' config class, e.g. "RTDetrConfig"
    model_class: str  # transformers' detector class, e.g. "RTDetrForObjectDetection"
    title: str  # "RT-DETR"
    paper: str  # authors, year, title
    attention_kind: str  # "dense" (DenseAttention) or "sampling" (SamplingPoints)
    imagenet_normalized: bool  # its image processor normalizes with ImageNet's mean and std
    takes_pixel_mask: bool  # its forward reads a pixel_mask (padding is masked out)
    image_min_size: int = 800  # its processor's resize (shorter side, longer side at most)
    image_max_size: int = 1333
    # its processor stretches every image to image_min_size x image_max_size (height, width) instead,
    # as RT-DETR's does by default ({"height": 640, "width": 640})
    stretch: bool = False
    # the input is padded (bottom/right) to a multiple of this (0: not padded), and boxes, which the
    # family predicts relative to its whole input, are rescaled to each image's own extent
    size_divisor: int = 0
    # field -> (the value the wrapper can capture, why another is refused)
    refused: dict[str, tuple[Any, str]] = field(default_factory=dict)
    # a traced export (ONNX, pt2) of it can take any image size (False: one size, its fixed_size)
    traced_size_dynamic: bool = True
    # why torch.onnx's tracing (torchscript) exporter cannot write it ("": it can); the export then
    # takes the torch.export-based (dynamo) one
    torchscript_problem: str = ""


def transformers_module(title: str):
    """``import transformers``, or a CheckpointError naming the family and the install command."""
    try:
        import transformers
    except ImportError:
        raise CheckpointError(f"{title} models open through the transformers library, which is not installed: "
                              f"run `{INSTALL_HINT}`") from None
    return transformers


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else type(e).__name__


def refused_fields(spec: FamilySpec, hf: dict[str, Any]) -> list[str]:
    """What in a ``config.json`` the wrapper cannot open, each naming its field and value."""
    problems = [f"{name}={hf[name]!r} is not supported ({why}; only {runs!r})"
                for name, (runs, why) in spec.refused.items() if name in hf and hf[name] != runs]
    backbone = hf.get("backbone_config")
    if isinstance(backbone, dict) and backbone.get("model_type"):
        kind = str(backbone["model_type"])
        try:
            from transformers import CONFIG_MAPPING
        except ImportError:
            CONFIG_MAPPING = None  # noqa: N806 - checked when the model is built
        if CONFIG_MAPPING is not None and kind not in CONFIG_MAPPING:
            problems.append(f"backbone_config.model_type={kind!r} is not a backbone transformers knows")
        if kind == "timm_backbone" and not _has_timm():
            problems.append(f"backbone_config.model_type={kind!r} needs the timm package, which is not installed")
    elif hf.get("use_timm_backbone", False) and not _has_timm():
        problems.append(f"use_timm_backbone=True with backbone={hf.get('backbone')!r} needs the timm package, "
                        "which is not installed")
    elif hf.get("backbone") and not hf.get("use_timm_backbone", False):
        problems.append(f"backbone={hf['backbone']!r} names a Hub model to download (the explorer opens folders "
                        "whose config.json holds its backbone_config)")
    elif backbone is not None and not isinstance(backbone, dict):
        problems.append(f"backbone_config={backbone!r} is not a backbone description")
    return problems


def _has_timm() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


def class_names(hf: dict[str, Any], num_classes: int) -> list[str]:
    id2label = {int(k): str(v) for k, v in (hf.get("id2label") or {}).items()}
    return [id2label.get(i, f"class {i}") for i in range(num_classes)]


class Recording(dict):
    """What the hooks of one forward pass saw: name -> list (one entry per call, in call order).
    Only calls on the thread that made it are recorded: the window may run the same model on two
    threads at once, and the other pass must not write into this one's recording."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def add(self, name: str, value: Any) -> None:
        if threading.get_ident() == self.thread:
            self.setdefault(name, []).append(value)


class WrappedDetector(nn.Module):
    """A transformers ``*ForObjectDetection`` answering the project's forward and capture protocol.

    Subclasses (one per family) give ``SPEC``, ``_hooks`` (what to record), ``_layers`` (every
    decoder layer's logits and boxes) and ``_capture`` (the ModelCapture)."""

    SPEC: ClassVar[FamilySpec]

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.config = config
        transformers = transformers_module(self.SPEC.title)
        hf_config = self.transformers_config(config.transformers_config)
        if self.SPEC.attention_kind == "dense":
            # attention maps need eager attention (sdpa returns none); set once, not per capture,
            # so passes on two threads never see it switch under them
            hf_config._attn_implementation = "eager"
        with _quiet_transformers(transformers):
            self.detector = getattr(transformers, self.SPEC.model_class)(hf_config)
        self.detector.eval()

    # --- configs ---------------------------------------------------------------------------
    @classmethod
    def transformers_config(cls, hf: dict[str, Any]):
        """transformers' config object of a ``config.json`` dict, adjusted for the wrapper."""
        transformers = transformers_module(cls.SPEC.title)
        problems = refused_fields(cls.SPEC, hf)
        if problems:
            raise CheckpointError("; ".join(problems))
        try:
            with _quiet_transformers(transformers):
                return cls._adjust(getattr(transformers, cls.SPEC.config_class).from_dict(dict(hf)))
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise CheckpointError(f"not a {cls.SPEC.title} config transformers can read ({_first_line(e)})") from None

    @classmethod
    def _adjust(cls, hf_config):
        """Changes to transformers' config that keep its forward pass (e.g. RT-DETR's fixed anchors)."""
        return hf_config

    @classmethod
    def detr_config(cls, hf: dict[str, Any], image_size: ImageSize | tuple[int, int] | None = None,
                    pixels: dict[str, Any] | None = None) -> DETRConfig:
        """The DETRConfig describing a ``config.json`` of this family (sizes for the views);
        ``image_size``: how the folder's image processor resizes, when it has one (a pair: shorter
        side, longer side at most), else the family's processor's default;
        ``pixels``: its normalization fields (:func:`processor_pixels`)."""
        hf_config = cls.transformers_config(hf)
        spec = cls.SPEC
        if image_size is None:
            stretched = (spec.image_min_size, spec.image_max_size) if spec.stretch else None
            image_size = ImageSize(spec.image_min_size, spec.image_max_size, stretched)
        elif not isinstance(image_size, ImageSize):
            image_size = ImageSize(*image_size)
        return DETRConfig(
            backbone="transformers", pretrained_backbone=False, dropout=0.0, classifier="focal",
            attention=cls.SPEC.name, num_classes=int(hf_config.num_labels), **image_size.config_fields(),
            transformers_config=json.loads(json.dumps(hf)), transformers_processor=dict(pixels or {}),
            **cls._sizes(hf_config),
        )

    @classmethod
    def _sizes(cls, hf_config) -> dict[str, Any]:
        """DETRConfig fields read off transformers' config (d_model, heads, layers, queries ...)."""
        raise NotImplementedError

    # --- running ---------------------------------------------------------------------------
    @property
    def stride(self) -> int:
        """Input pixels per cell of the (finest) feature map the attention views draw on."""
        raise NotImplementedError

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """(mean, std) per channel that the family's processor normalizes its rescaled pixels with, or None
        when it does not: the folder's ``preprocessor_config.json`` where it says, else the family's own."""
        pixels = self.config.transformers_processor
        if not pixels.get("do_normalize", self.SPEC.imagenet_normalized):
            return None
        return (channels(pixels.get("image_mean", IMAGENET_MEAN)), channels(pixels.get("image_std", IMAGENET_STD)))

    def pixel_scale(self) -> float:
        """What [0, 1] pixels are multiplied by before normalizing: 1.0 where the folder's processor
        rescales 8-bit pixels by 1/255 (transformers' default), 255 where it does not rescale (its model
        takes 0-255 pixels), 255 * rescale_factor for another factor."""
        return pixel_scale(self.config.transformers_processor)

    def inputs(self, samples: NestedTensor) -> dict[str, Tensor]:
        """The keyword arguments of transformers' forward for a padded batch: ``pixel_values``
        [B, 3, H, W] in the family's convention, and ``pixel_mask`` [B, H, W] (1 on pixels) when it takes one."""
        x, mask = samples.decompose()  # [B, 3, H, W] ImageNet-normalized, [B, H, W] True on padding
        if self.SPEC.size_divisor > 1:
            x, mask = pad_to_multiple(x, mask, self.SPEC.size_divisor)
        normalization, scale = self.normalization(), self.pixel_scale()
        if normalization != (IMAGENET_MEAN, IMAGENET_STD) or scale != 1.0:
            # back to [0, 1], rescaled and normalized the family's way; padding 0
            x = x * x.new_tensor(IMAGENET_STD)[:, None, None] + x.new_tensor(IMAGENET_MEAN)[:, None, None]
            if scale != 1.0:
                x = x * scale
            if normalization is not None:
                mean, std = normalization
                x = (x - x.new_tensor(mean)[:, None, None]) / x.new_tensor(std)[:, None, None]
            x = x.masked_fill(mask[:, None], 0.0)
        args = {"pixel_values": x}
        if self.SPEC.takes_pixel_mask:
            args["pixel_mask"] = (~mask).long()
        return args

    def forward(
        self,
        samples: NestedTensor | Tensor | list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        capture: bool = False,
    ) -> dict[str, Any]:
        """samples: [B, 3, H, W] ImageNet-normalized images, a list of [3, H_i, W_i] or a
        NestedTensor; ``targets`` are not used (these families are opened, not trained here).

        Returns pred_logits [B, Q, C] (sigmoid per class), pred_boxes [B, Q, 4] cxcywh in [0, 1],
        aux_outputs (every earlier decoder layer), query_groups (1) and, with ``capture``, a
        :class:`~detr_core.model.capture_protocol.ModelCapture`."""
        if not isinstance(samples, NestedTensor):
            samples = nested_tensor_from_tensor_list(samples)
        recording = Recording()
        inputs = self.inputs(samples)
        with self._recording(recording, capture):
            try:
                out = self.detector(**inputs, **self._forward_options(capture))
            except RuntimeError as e:
                if "selected index k out of range" not in str(e):
                    raise
                # the queries start from the encoder's best tokens (torch.topk), and a small input
                # has fewer tokens than queries: say so, rather than torch's words
                hp, wp = inputs["pixel_values"].shape[-2:]
                raise ValueError(
                    f"{self.SPEC.title} starts each of its {self.config.num_queries} queries from one of the "
                    f"encoder's feature cells, and a {wp}x{hp} input has fewer cells than that: give it a "
                    f"larger image (it was made for {self.config.image_min_size}-{self.config.image_max_size} px)"
                ) from None
        logits, boxes = self._layers(out, recording)  # [L, B, Q, C], [L, B, Q, 4]
        pred_boxes = out.pred_boxes
        scale = None
        if self.SPEC.size_divisor > 1:  # relative to the whole input -> to each image
            valid = ~samples.mask  # [B, H, W]
            h = valid.any(2).sum(1).to(boxes.dtype)  # [B] each image's height
            w = valid.any(1).sum(1).to(boxes.dtype)
            hp, wp = inputs["pixel_values"].shape[-2:]
            scale = torch.stack([wp / w, hp / h, wp / w, hp / h], -1)[:, None, :]  # [B, 1, 4]
            # always multiplied (by exactly 1 where unpadded: the same bits): a traced export
            # (ONNX, torch.export) cannot branch on a tensor's values
            boxes, pred_boxes = boxes * scale, pred_boxes * scale
        result: dict[str, Any] = {
            "pred_logits": out.logits,
            "pred_boxes": pred_boxes,
            "aux_outputs": [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])],
            "query_groups": 1,
        }
        if capture:
            cap = self._capture(out, recording, logits, boxes, samples)
            if cap.selection_boxes is not None and scale is not None and bool((scale != 1).any()):
                cap.selection_boxes = cap.selection_boxes * scale  # as the predictions: to each image
            result["capture"] = cap
        return result

    def _forward_options(self, capture: bool) -> dict[str, Any]:
        """Extra keyword arguments of transformers' forward (e.g. output_attentions)."""
        return {}

    @contextlib.contextmanager
    def _recording(self, recording: Recording, capture: bool) -> Iterator[None]:
        handles = [register(recording) for register in self._hooks(capture)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def _hooks(self, capture: bool) -> list[Callable[[Recording], Any]]:
        """Registrations for this forward pass: each takes the Recording and returns a hook handle."""
        return []

    def _layers(self, out: Any, recording: Recording) -> tuple[Tensor, Tensor]:
        """Every decoder layer's class logits [L, B, Q, C] and boxes [L, B, Q, 4] cxcywh in [0, 1];
        the last layer's are ``out.logits`` and ``out.pred_boxes``."""
        raise NotImplementedError

    def _capture(self, out: Any, recording: Recording, logits: Tensor, boxes: Tensor,
                 samples: NestedTensor) -> ModelCapture:
        raise NotImplementedError


# --- hook helpers (each returns a registration for WrappedDetector._hooks) -------------------------

def output_of(module: nn.Module, name: str, pick: Callable[[Any], Any] = lambda o: o):
    """Record ``pick(output)`` of every call of ``module`` under ``name``."""
    def register(recording: Recording):
        return module.register_forward_hook(lambda m, args, output: recording.add(name, pick(output)))
    return register


def inputs_of(module: nn.Module, name: str, pick: Callable[[tuple, dict], Any]):
    """Record ``pick(args, kwargs)`` of every call of ``module`` under ``name`` (before it runs)."""
    def register(recording: Recording):
        return module.register_forward_pre_hook(
            lambda m, args, kwargs: recording.add(name, pick(args, kwargs)), with_kwargs=True)
    return register


def pad_to_multiple(x: Tensor, mask: Tensor, divisor: int) -> tuple[Tensor, Tensor]:
    """x [B, C, H, W] and mask [B, H, W] (True on padding) padded bottom/right to multiples of ``divisor``."""
    h, w = x.shape[-2:]
    ph, pw = -h % divisor, -w % divisor
    if not ph and not pw:
        return x, mask
    return F.pad(x, (0, pw, 0, ph)), F.pad(mask, (0, pw, 0, ph), value=True)


def heads_first(x: Tensor, heads: int) -> Tensor:
    """[B, S, D] -> [B, heads, S, D / heads]."""
    b, s, d = x.shape
    return x.view(b, s, heads, d // heads).transpose(1, 2)


def dense_attention(recording: Recording, heads: int, valid: Tensor) -> DenseAttention:
    """The DenseAttention of a dense family's recording: ``cross`` and ``self`` (per decoder layer,
    weights [B, heads, Q, S] and [B, heads, Q, Q]), ``enc_q`` and ``enc_k`` (per encoder layer,
    [B, S, D] before the heads split); ``valid`` [B, h, w] True on image cells of the grid.

    Decoder captures keep only weights (their q and k are [B, heads, Q, 0]: these families build
    them by concatenating content and position parts inside transformers' attention)."""
    def weights_only(w: Tensor) -> AttentionCapture:
        empty = w.new_zeros((*w.shape[:3], 0))
        return AttentionCapture(weights=w, q=empty, k=empty)

    encoder = [AttentionCapture(weights=None, q=heads_first(q, heads), k=heads_first(k, heads))
               for q, k in zip(recording.get("enc_q", []), recording.get("enc_k", []))]
    return DenseAttention(
        encoder=encoder,
        decoder_self=[weights_only(w) for w in recording.get("self", [])],
        decoder_cross=[weights_only(w) for w in recording["cross"]],
        memory_allowed=valid.flatten(1)[:, None, None, :] if not bool(valid.all()) else None,
        feature_mask=~valid,
    )


@contextlib.contextmanager
def _quiet_transformers(transformers) -> Iterator[None]:
    """transformers' own warnings (weights initialised, heads not a power of 2) are not the user's."""
    import warnings

    logging = transformers.utils.logging
    level, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


# --- the registry's entries of a wrapped family --------------------------------------------------

def check_wrapped_config(spec: FamilySpec, config: DETRConfig) -> None:
    """Raise ValueError unless ``config`` describes a model of the wrapped family ``spec``."""
    if config.backbone != "transformers":
        raise ValueError(f"{spec.title} is wrapped from transformers: backbone must be 'transformers'")
    kind = config.transformers_config.get("model_type")
    if kind != spec.model_type:
        raise ValueError(f"{spec.title} needs the transformers config.json it was opened from "
                         f"(transformers_config with model_type {spec.model_type!r}, got {kind!r})")


def backbone_name(config: DETRConfig) -> str:
    """The backbone a wrapped family's config names, e.g. "rt_detr_resnet (bottleneck, depths 3-4-6-3)"."""
    hf = config.transformers_config
    backbone = hf.get("backbone_config")
    if isinstance(backbone, dict):
        parts = [str(backbone.get(k)) for k in ("layer_type",) if backbone.get(k)]
        if backbone.get("depths"):
            parts.append("depths " + "-".join(str(d) for d in backbone["depths"]))
        return f"{backbone.get('model_type', 'backbone')}" + (f" ({', '.join(parts)})" if parts else "")
    return str(hf.get("backbone") or "transformers")


# --- opening a save_pretrained folder ----------------------------------------------------------

def processor_pixels(folder: Path) -> dict[str, Any]:
    """The fields of the folder's ``preprocessor_config.json`` that change the pixel values the model
    sees (:func:`detr_core.formats.hf_processor.processor_pixels`); {} without the file. Raises
    CheckpointError naming any field of the file the explorer cannot follow."""
    return open_processor(folder)[1]


def open_folder(cls: type[WrappedDetector], hf: dict[str, Any], config_path: Path, weights: Path) -> Checkpoint:
    """A Checkpoint of the wrapped family ``cls`` from a ``save_pretrained`` folder, loaded by
    transformers' own ``from_pretrained`` (its key renames and tied weights included); the input
    size is its image processor's when the folder has one. Raises
    CheckpointError on refused fields, unreadable or missing weights."""
    spec = cls.SPEC
    transformers = transformers_module(spec.title)
    size, pixels = open_processor(config_path.parent)
    try:
        config = cls.detr_config(hf, size, pixels)  # refusals first
        hf_config = cls.transformers_config(hf)
    except (CheckpointError, ValueError) as e:
        raise CheckpointError(f"{config_path.name}: {e}") from None
    detector_class = getattr(transformers, spec.model_class)
    try:
        with _quiet_transformers(transformers):
            detector, info = detector_class.from_pretrained(
                str(config_path.parent), config=hf_config, output_loading_info=True, local_files_only=True, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - damaged files fail in many ways
        raise CheckpointError(f"{weights.name}: not readable {spec.title} weights; is the file corrupt or "
                              f"truncated? ({_first_line(e)})") from None
    missing = sorted(info.get("missing_keys") or [])
    mismatched = info.get("mismatched_keys") or []
    if missing:
        raise CheckpointError(f"{weights.name}: {len(missing)} weights of the {spec.title} its config.json "
                              f"describes are missing (e.g. {missing[0]})")
    if mismatched:
        key, *_ = mismatched[0]
        raise CheckpointError(f"{weights.name}: {key} has another shape than the {spec.title} its config.json "
                              "describes")
    state = {f"detector.{k}": v for k, v in detector.state_dict().items()}
    return Checkpoint(config, class_names(hf, config.num_classes), state, source="huggingface/transformers",
                      extra={"family": spec.name})


def registry_entries(detector: type[WrappedDetector],
                     backbone: Callable[[DETRConfig], str] | None = None) -> SimpleNamespace:
    """A wrapped family's entries in :mod:`detr_core.model.registry`, made from its detector class
    (what a native family's module defines at its end): ``build``, ``check_config``,
    ``ATTENTION_KIND``, ``TITLE``, ``PAPER``, ``TRAIN_PROBLEM``, ``EXPORT_PROBLEM``,
    ``TRACED_SIZE_DYNAMIC``, ``TORCHSCRIPT_PROBLEM`` and ``backbone_name`` (``backbone``, default: the name the config's ``backbone_config`` gives).
    A family module holds them as ``FAMILY``, which the registry reads in place of the module."""
    spec = detector.SPEC
    return SimpleNamespace(
        build=detector,
        check_config=functools.partial(check_wrapped_config, spec),
        ATTENTION_KIND=spec.attention_kind,
        TITLE=spec.title,
        PAPER=spec.paper,
        TRAIN_PROBLEM=TRAIN_PROBLEM_TEMPLATE.format(title=spec.title),
        EXPORT_PROBLEM=EXPORT_PROBLEM,
        TRACED_SIZE_DYNAMIC=spec.traced_size_dynamic,
        TORCHSCRIPT_PROBLEM=spec.torchscript_problem,
        backbone_name=backbone or backbone_name,
    )
