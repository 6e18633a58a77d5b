"""Reading user images and turning them into model input.

Any format Pillow reads (PNG, JPEG, BMP, WebP, GIF, TIFF...), grayscale, palette or RGBA,
EXIF-rotated photos upright. Errors name the file and the problem.
"""

from __future__ import annotations

import io
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


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """PIL image -> [H, W, 3] uint8, upright (EXIF orientation applied), alpha composited on white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_image(source: str | Path | bytes) -> np.ndarray:
    """Read an image file (or encoded bytes) as [H, W, 3] uint8 RGB."""
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
        with fp, Image.open(fp) as img:
            img.load()
            array = to_rgb_array(img)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image format this app can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageLoadError(f"{name}: the image is damaged or truncated ({e})") from None
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ImageLoadError(f"{name}: the image is too small ({array.shape[1]}x{array.shape[0]} pixels)")
    return array


_SCALE = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD])  # uint8 -> normalized, in one
_SHIFT = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])  # multiply-add


def to_tensor(image_rgb: np.ndarray) -> Tensor:
    """[..., H, W, 3] uint8 -> [..., 3, H, W] float32, ImageNet-normalized."""
    # channels first while still uint8 (cheap), then one in-place multiply-add per element
    t = torch.from_numpy(np.ascontiguousarray(image_rgb)).movedim(-1, -3).contiguous().float()
    return t.mul_(_SCALE[:, None, None]).add_(_SHIFT[:, None, None])


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


def prepare(image_rgb: np.ndarray, min_size: int, max_size: int) -> Tensor:
    """[H, W, 3] uint8 -> [3, H', W'] normalized model input, resized by the reference's rule."""
    h, w = image_rgb.shape[:2]
    x = to_tensor(image_rgb)
    nh, nw = resized_shape(h, w, min_size, max_size)
    if (nh, nw) != (h, w):
        x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)[0]
    return x
