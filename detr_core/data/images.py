"""Reading user images and turning them into model input.

Any format Pillow reads (PNG, JPEG, BMP, WebP, GIF, TIFF...), grayscale, palette or RGBA,
16-bit and float images scaled to 8 bits, EXIF-rotated photos upright; large images downscaled
while decoding, images past Pillow's hard limit refused as too large. Errors name the file and
the problem.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageLoadError(ValueError):
    """A file or buffer that is not a readable image."""


MAX_SIDE = 2048  # images are downscaled while decoding to at most this side (models use <= 1333)
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # larger images are refused (Pillow's own hard limit)
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_8bit(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float images scaled (not clipped) to 8-bit grayscale:
    16-bit by its full range (65535 -> 255); 32-bit integers as 8- or 16-bit data when they fit,
    else by their own range; floats as [0, 1] or [0, 255] when they fit, else by their own range.
    Other modes are returned as they are."""
    if image.mode not in _WIDE_MODES:
        return image
    a = np.asarray(image)
    if image.mode.startswith("I;16"):
        out = (a.astype(np.uint32) * 255 + 32767) // 65535
    else:
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if image.mode == "F" and lo >= 0 and hi <= 1:
            out = a * 255
        elif lo >= 0 and hi <= 255:
            out = a
        elif image.mode == "I" and lo >= 0 and hi <= 65535:
            out = a * (255 / 65535)
        else:
            out = (a - lo) * (255 / (hi - lo)) if hi > lo else np.zeros_like(a)
        out = np.rint(out)
    return Image.fromarray(out.astype(np.uint8), "L")


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """PIL image -> [H, W, 3] uint8, upright (EXIF orientation applied), alpha composited on white;
    16-bit, 32-bit and float images scaled to 8 bits."""
    image = ImageOps.exif_transpose(to_8bit(image))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


@dataclass
class LoadedImage:
    array: np.ndarray  # [H, W, 3] uint8 RGB, upright, at most max_side on its longer side
    original_size: tuple[int, int]  # (width, height) of the file's image, upright

    @property
    def scale(self) -> float:
        """Original pixels per loaded pixel (1.0 when the image was not downscaled)."""
        return self.original_size[0] / self.array.shape[1]


def read_image(source: str | Path | bytes, max_side: int | None = MAX_SIDE) -> LoadedImage:
    """Read an image file (or encoded bytes), downscaled while decoding to at most ``max_side``
    pixels on its longer side (JPEGs decode at 1/2, 1/4 or 1/8 size directly, so a huge photo
    never exists at full size in memory). Raises ImageLoadError naming the file and the problem."""
    name = "the clipboard data" if isinstance(source, bytes) else str(source)
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageLoadError(f"{name}: is a folder, not an image") from None
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot open ({e.strerror or e})") from None
    try:
        with fp, warnings.catch_warnings():
            # images between Pillow's warning and hard limits: fine, they are downscaled below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{width * height} pixels")
                if max_side and max(width, height) > max_side:
                    k = max_side / max(width, height)  # JPEG: decode at 1/2, 1/4 or 1/8 size
                    img.draft(None, (max(1, math.ceil(width * k)), max(1, math.ceil(height * k))))
                img.load()
                small = to_8bit(img)
                if max_side and max(small.size) > max_side:
                    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
                array = to_rgb_array(small)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image format this app can read") from None
    except Image.DecompressionBombError as e:
        found = re.search(r"(\d+) pixels", str(e))
        size = f" ({int(found.group(1)) / 1e6:.0f} million pixels)" if found else ""
        raise ImageLoadError(
            f"{name}: the image is too large{size}; at most {MAX_PIXELS / 1e6:.0f} million pixels can be opened"
        ) from None
    except MemoryError:
        raise ImageLoadError(f"{name}: the image is too large for the memory left") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageLoadError(f"{name}: the image is damaged or truncated ({e})") from None
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ImageLoadError(f"{name}: the image is too small ({array.shape[1]}x{array.shape[0]} pixels)")
    upright = (width, height)
    if (array.shape[1] >= array.shape[0]) != (width >= height) and width != height:
        upright = (height, width)  # the EXIF orientation turned it by 90 degrees
    return LoadedImage(array, upright)


def load_image(source: str | Path | bytes, max_side: int | None = MAX_SIDE) -> np.ndarray:
    """Read an image file (or encoded bytes) as [H, W, 3] uint8 RGB, downscaled while decoding
    to at most ``max_side`` on its longer side (see :func:`read_image`)."""
    return read_image(source, max_side).array


_SCALE = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD])  # uint8 -> normalized, in one
_SHIFT = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])  # multiply-add


def to_tensor(image_rgb: np.ndarray) -> Tensor:
    """[..., H, W, 3] uint8 -> [..., 3, H, W] float32, ImageNet-normalized."""
    # channels first while still uint8 (cheap), then one in-place multiply-add per element
    return normalize_uint8(torch.from_numpy(np.ascontiguousarray(image_rgb)).movedim(-1, -3).contiguous())


def normalize_uint8(pixels: Tensor) -> Tensor:
    """[..., 3, H, W] uint8 (channels first) -> float32, ImageNet-normalized."""
    return pixels.float().mul_(_SCALE[:, None, None]).add_(_SHIFT[:, None, None])


def to_uint8(image: Tensor) -> np.ndarray:
    """Inverse of :func:`to_tensor`: [3, H, W] normalized -> [H, W, 3] uint8."""
    rgb = (image.detach().cpu().movedim(-3, -1) - _SHIFT) / _SCALE
    return rgb.round().clamp(0, 255).to(torch.uint8).numpy()


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """The reference's resize rule: shorter side to min_size unless the longer exceeds max_size."""
    short, long = min(height, width), max(height, width)
    scale = min_size / short
    if long * scale > max_size:
        scale = max_size / long
    return max(1, round(height * scale)), max(1, round(width * scale))


def prepare(image_rgb: np.ndarray, min_size: int, max_size: int, fixed: tuple[int, int] | None = None) -> Tensor:
    """[H, W, 3] uint8 -> [3, H', W'] normalized model input, resized by the reference's rule
    (``fixed``: stretched to that (height, width) instead, see ``DETRConfig.fixed_input_size``)."""
    return resize_tensor(to_tensor(image_rgb), min_size, max_size, fixed)


def resize_tensor(x: Tensor, min_size: int, max_size: int, fixed: tuple[int, int] | None = None) -> Tensor:
    """[3, H, W] -> [3, H', W'] resized by the reference's rule, or stretched to ``fixed`` (height,
    width); itself when already that size."""
    h, w = x.shape[-2:]
    nh, nw = fixed or resized_shape(h, w, min_size, max_size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    return x
