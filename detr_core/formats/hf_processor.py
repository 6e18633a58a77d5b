"""A Hugging Face folder's image processor (``preprocessor_config.json``), read without ``transformers``.

transformers turns a photo into a model's ``pixel_values`` with the folder's image processor
(``DetrImageProcessor``, ``RTDetrImageProcessor`` ... and their ``*Pil`` twins, which all take the
same fields). The explorer makes its own input (:func:`detr_core.data.images.prepare`: resized,
ImageNet-normalized, batches padded bottom/right) and each family turns it into its processor's
convention; this module says what of the processor it follows:

    processor = read_processor(folder)          # {} without the file
    problems = processor_problems(processor)    # refused fields, each named with its value
    processor_size(processor)                   # ImageSize (shorter/longer side, or stretched) or None
    processor_pixels(processor)                 # the fields that change the pixel values

Every field the processors take is in exactly one of three tables (``PROCESSOR_FOLLOWED``,
``PROCESSOR_REFUSED``, ``PROCESSOR_NO_EFFECT``; tests/test_hf_processors.py walks transformers'
processor classes against them), and a field in none is refused by name: nothing in the file is
ignored unnoticed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detr_core.checkpoint_types import CheckpointError
from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD

PROCESSOR_NAME = "preprocessor_config.json"
BILINEAR = 2  # PIL's and transformers' number for bilinear resampling (PILImageResampling.BILINEAR)
DEFAULT_LONGEST_EDGE = 1333  # transformers' longest edge beside an old-style ``"size": 800``

PROCESSOR_FOLLOWED = {
    # field -> how the explorer follows it
    "size": "image_min_size / image_max_size: {shortest_edge, longest_edge} as written, and an old single "
            "number as the shortest edge (longest: max_size, else 1333), the aspect ratio kept; {height, width} "
            "as image_height / image_width, every image stretched to it as the processor does",
    "max_size": "the longest edge beside an old single-number size (transformers 4's DETR processors)",
    "do_rescale": "the [0, 1] pixels are multiplied by 255 * rescale_factor, or by 255 without rescaling "
                  "(wrapped families; the explorer's own DETR takes 1/255 only)",
    "rescale_factor": "as do_rescale",
    "do_normalize": "(x - image_mean) / image_std after rescaling, or not at all (wrapped families; the "
                    "explorer's own DETR takes ImageNet's normalization only)",
    "image_mean": "as do_normalize (one number or one per channel)",
    "image_std": "as do_normalize (one number or one per channel, positive)",
    "do_pad": "a batch is padded bottom/right with zeros to its largest image as do_pad does (a single "
              "image is not padded; without padding transformers batches only images of one size)",
}
# field -> (the values the explorer runs, why another is refused)
PROCESSOR_REFUSED = {
    "do_resize": ((True, None), "the explorer resizes every image by the processor's size"),
    "resample": ((BILINEAR, None), "the explorer resizes bilinearly with antialiasing, as the processors' "
                                   f"bilinear resample ({BILINEAR}) does"),
    "pad_size": ((None,), "the explorer pads a batch to its largest image, not every image to one fixed size"),
}
PROCESSOR_NO_EFFECT = {  # do not change the pixels of an image the model can take
    "format", "do_convert_annotations",  # annotations only (training and evaluation targets)
    "do_center_crop", "crop_size",  # read by no DETR-family processor: they never crop
    "default_to_square",  # the size's layout decides; read only where a size is one number, as above
    "image_seq_length",  # read by no DETR-family processor (vision-language processors' token count)
    "do_convert_rgb",  # the explorer converts every image to RGB; without it a 3-channel model cannot run others
    "return_tensors", "data_format", "input_data_format", "device", "disable_grouping",  # how tensors are returned
    "image_processor_type", "feature_extractor_type", "processor_class", "auto_map",  # which class reads the file
}


def read_processor(folder: Path) -> dict[str, Any]:
    """The folder's ``preprocessor_config.json`` as a dict; {} without one. CheckpointError if unreadable."""
    path = Path(folder) / PROCESSOR_NAME
    try:
        text = path.read_text()
    except OSError:
        return {}
    try:
        processor = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{PROCESSOR_NAME}: not readable JSON ({e})") from None
    if not isinstance(processor, dict):
        raise CheckpointError(f"{PROCESSOR_NAME}: not a JSON object of fields")
    return processor


def channels(value: Any) -> tuple[float, ...]:
    """A processor's ``image_mean`` / ``image_std`` (one number or one per channel) as three floats."""
    values = [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) != 3:
        raise ValueError(f"{value!r} is not one value or three")
    return tuple(values)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class ImageSize:
    """How a processor resizes an image: its shorter side to ``min_size`` with the longer at most
    ``max_size``; or, where ``fixed`` is set, stretched to exactly that (height, width), the aspect
    ratio not kept (``min_size``/``max_size`` then the smaller and larger of the two)."""

    min_size: int
    max_size: int
    fixed: tuple[int, int] | None = None

    def config_fields(self) -> dict[str, int]:
        """The DETRConfig fields that resize so (``image_min_size`` ... ``image_width``)."""
        height, width = self.fixed or (0, 0)
        return {"image_min_size": self.min_size, "image_max_size": self.max_size,
                "image_height": height, "image_width": width}


def processor_size(processor: dict[str, Any]) -> ImageSize | None:
    """How the processor resizes, or None when it has no size (the family's own default) or one of
    another layout (:func:`processor_problems` names it): ``{shortest_edge, longest_edge}`` and an
    old single number keep the aspect ratio; ``{height, width}`` (RT-DETR's) stretches to it."""
    size = processor.get("size")
    if _positive_int(size):  # transformers 4's DETR processors: "size": 800, "max_size": 1333
        longest = processor.get("max_size")
        return ImageSize(int(size), int(longest) if _positive_int(longest) else DEFAULT_LONGEST_EDGE)
    if not isinstance(size, dict):
        return None
    if all(_positive_int(size.get(k)) for k in ("shortest_edge", "longest_edge")):
        low, high = int(size["shortest_edge"]), int(size["longest_edge"])
        return ImageSize(low, high) if low <= high else None
    if all(_positive_int(size.get(k)) for k in ("height", "width")):
        height, width = int(size["height"]), int(size["width"])
        return ImageSize(min(height, width), max(height, width), (height, width))
    return None


def processor_pixels(processor: dict[str, Any]) -> dict[str, Any]:
    """The fields of a processor that change the pixel values the model sees (``do_rescale``,
    ``rescale_factor``, ``do_normalize``, ``image_mean``, ``image_std``), as written."""
    return {k: processor[k] for k in ("do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std")
            if processor.get(k) is not None}


def pixel_scale(pixels: dict[str, Any]) -> float:
    """What [0, 1] pixels (the 8-bit value / 255) are multiplied by to be the processor's rescaled
    pixels: 255 * rescale_factor, or 255 without rescaling (1.0 for transformers' defaults)."""
    if not pixels.get("do_rescale", True):
        return 255.0
    factor = float(pixels.get("rescale_factor", 1 / 255))
    return 1.0 if factor == 1 / 255 else 255.0 * factor


def processor_problems(processor: dict[str, Any]) -> list[str]:
    """What in a ``preprocessor_config.json`` the explorer cannot follow, each naming its field and value."""
    problems = [f"{name}={processor[name]!r} is not supported ({why}; only {runs[0]!r})"
                for name, (runs, why) in PROCESSOR_REFUSED.items()
                if name in processor and processor[name] not in runs]
    known = set(PROCESSOR_FOLLOWED) | set(PROCESSOR_REFUSED) | PROCESSOR_NO_EFFECT
    # (a leading underscore marks what transformers keeps for itself, e.g. "_processor_class")
    problems += [f"{name}={processor[name]!r} is a field the explorer does not know (it may change the pixels "
                 "the model sees; remove it from the file if it does not)"
                 for name in processor if name not in known and not name.startswith("_")]
    size = processor.get("size")
    if size is not None and processor_size(processor) is None:
        problems.append(f"size={size!r} is not supported (only {{shortest_edge, longest_edge}} with the shortest "
                        "not above the longest, {height, width}, or one number)")
    if "max_size" in processor and processor["max_size"] is not None and not _positive_int(processor["max_size"]):
        problems.append(f"max_size={processor['max_size']!r} is not a positive whole number")
    for name in ("do_rescale", "do_normalize", "do_resize", "do_pad"):
        if processor.get(name) is not None and not isinstance(processor[name], bool):
            problems.append(f"{name}={processor[name]!r} is not true or false")
    factor = processor.get("rescale_factor")
    if factor is not None and not (isinstance(factor, (int, float)) and not isinstance(factor, bool)
                                   and math.isfinite(factor) and factor > 0):
        problems.append(f"rescale_factor={factor!r} is not a positive number")
    for name in ("image_mean", "image_std"):
        if processor.get(name) is None:
            continue
        try:
            values = channels(processor[name])
        except (TypeError, ValueError):
            problems.append(f"{name}={processor[name]!r} is not one number or one per channel (3)")
            continue
        if not all(math.isfinite(v) for v in values) or (name == "image_std" and min(values) <= 0):
            problems.append(f"image_std={processor[name]!r} is not positive" if name == "image_std"
                            else f"{name}={processor[name]!r} is not finite")
    return problems


def imagenet_problems(pixels: dict[str, Any]) -> list[str]:
    """The pixel fields (:func:`processor_pixels`) that differ from what the explorer's own DETR and
    Deformable DETR take (transformers' defaults: rescaled by 1/255, normalized with ImageNet's mean and std)."""
    why = ("the explorer's own DETR takes 8-bit pixels / 255 normalized with ImageNet's mean and std, "
           "transformers' defaults")
    problems = []
    if not pixels.get("do_rescale", True):
        problems.append(f"do_rescale=False is not supported ({why})")
    elif pixel_scale(pixels) != 1.0:
        problems.append(f"rescale_factor={pixels['rescale_factor']!r} is not supported ({why}: 1/255)")
    if not pixels.get("do_normalize", True):
        problems.append(f"do_normalize=False is not supported ({why})")
    for name, default in (("image_mean", IMAGENET_MEAN), ("image_std", IMAGENET_STD)):
        if name in pixels and not all(abs(a - b) <= 1e-6 for a, b in zip(channels(pixels[name]), default)):
            problems.append(f"{name}={pixels[name]!r} is not supported ({why}: {list(default)!r})")
    return problems


def open_processor(folder: Path, own_normalization: bool = False) -> tuple[tuple[int, int] | None, dict[str, Any]]:
    """(:func:`processor_size`, :func:`processor_pixels`) of the folder's processor; CheckpointError
    naming every field the explorer cannot follow (``own_normalization``: the pixels must be the ones
    the explorer's own models take, see :func:`imagenet_problems`)."""
    processor = read_processor(folder)
    problems = processor_problems(processor)
    pixels = processor_pixels(processor)
    if not problems and own_normalization:
        problems = imagenet_problems(pixels)
    if problems:
        raise CheckpointError(f"{PROCESSOR_NAME}: " + "; ".join(problems))
    return processor_size(processor), pixels


def processor_for(min_size: int, max_size: int, fixed: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ``preprocessor_config.json`` of transformers' ``DetrImageProcessor`` that resizes as the
    explorer's own DETR does (shorter side ``min_size``, longer at most ``max_size``, or stretched to
    ``fixed`` (height, width)) and makes its pixels (8-bit / 255, ImageNet's mean and std, batches
    padded bottom/right): written beside an exported model, so transformers runs it at the size it
    was made for, not at the processor's default 800 / 1333. :func:`processor_problems` accepts it."""
    size = {"height": fixed[0], "width": fixed[1]} if fixed else {"shortest_edge": min_size, "longest_edge": max_size}
    return {"image_processor_type": "DetrImageProcessor", "format": "coco_detection", "do_resize": True,
            "size": size, "resample": BILINEAR, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "do_pad": True}
