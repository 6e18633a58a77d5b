"""Toy shapes: rectangles, ellipses and triangles on coloured backgrounds.

Deterministic: sample ``i`` of a ``ToyShapes`` is a pure function of (seed, split, i), so a
training run is reproducible under its seed, and the held-out split (``split="heldout"``) never
shares an image with any training stream.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import Tensor

from detr_core.config import ToyDataConfig
from detr_core.data.dataset import DetectionDataset, Sample
from detr_core.data.images import normalize_uint8, to_tensor

HELDOUT_SEED = 20201  # the fixed held-out split every evaluation uses


ToySample = Sample  # [S, S, 3] uint8 image, [N] labels, [N, 4] pixel boxes tight around each shape


def _split_code(split: str) -> int:
    return zlib.crc32(split.encode())


class ToyShapes(DetectionDataset):
    """A map-style dataset of toy images; ``length=None`` means an endless stream."""

    name = "toy shapes"
    eval_batch_size = 50  # small images of one size

    def __init__(
        self, config: ToyDataConfig | None = None, seed: int = 0, split: str = "train", length: int | None = None
    ) -> None:
        self.config = config or ToyDataConfig()
        self.seed = seed
        self.split = split
        self.length = length
        s = self.config.image_size
        centres = np.arange(s, dtype=np.float32) + 0.5
        self._ys = centres[:, None]  # [S, 1] pixel-centre rows
        self._xs = centres[None, :]  # [1, S] pixel-centre columns
        self._noise_bank: np.ndarray | None = None
        self._canvas = np.empty((3, s, s), dtype=np.float32)  # reused by every sample() call

    @property
    def class_names(self) -> list[str]:
        return list(self.config.classes)

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless ToyShapes stream has no length")
        return self.length

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        if self.length is not None and not 0 <= index < self.length:
            raise IndexError(index)
        sample = self.sample(index)
        return to_tensor(sample.image), self.target(sample, index)

    def target(self, sample: ToySample, index: int) -> dict[str, Tensor]:
        """labels [M], boxes [M, 4] cxcywh normalized, orig_size [2] (H, W), image_id []."""
        s = self.config.image_size
        xyxy = torch.from_numpy(sample.boxes_xyxy) / s
        cxcywh = torch.stack(
            [(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]],
            dim=1,
        ) if len(xyxy) else torch.zeros(0, 4)
        return {
            "labels": torch.from_numpy(sample.labels),
            "boxes": cxcywh.float(),
            "orig_size": torch.tensor([s, s]),
            "image_id": torch.tensor(index),
        }

    def batch(self, indices: range | list[int]) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """[B, 3, S, S] normalized images and their targets: the images of :meth:`sample`, drawn
        straight into one channels-first uint8 array (no round trip through [S, S, 3]) and
        normalized in one go."""
        s = self.config.image_size
        pixels = np.empty((len(indices), 3, s, s), dtype=np.uint8)
        samples = [self._draw(i, pixels[k]) for k, i in enumerate(indices)]
        images = normalize_uint8(torch.from_numpy(pixels))  # [B, 3, S, S]
        return images, [self.target(smp, i) for smp, i in zip(samples, indices)]

    # --- drawing ------------------------------------------------------------------------
    def sample(self, index: int) -> ToySample:
        s = self.config.image_size
        out = np.empty((s, s, 3), dtype=np.uint8)
        return self._draw(index, out.transpose(2, 0, 1))

    def _draw(self, index: int, pixels: np.ndarray) -> ToySample:
        """Draw sample ``index`` into ``pixels`` ([3, S, S] uint8, any strides); the returned
        sample's image is ``pixels`` seen as [S, S, 3]."""
        cfg = self.config
        s = cfg.image_size
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, _split_code(self.split), index])
        image = self._background(rng)  # [3, S, S] float32
        n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        labels: list[int] = []
        boxes: list[np.ndarray] = []
        placed: list[tuple[float, float, float, float]] = []
        for _ in range(n):
            box = self._place(rng, placed)
            if box is None:
                continue
            cls = int(rng.integers(len(cfg.classes)))
            x0, y0, x1, y1 = box
            ix0, iy0, ix1, iy1 = int(x0), int(y0), min(int(np.ceil(x1)), s), min(int(np.ceil(y1)), s)
            mask = self._shape_mask(cfg.classes[cls], rng, box, ix0, iy0, ix1, iy1)
            rows = np.flatnonzero(mask.any(1))
            cols = np.flatnonzero(mask.any(0))
            if len(rows) == 0:
                continue
            window = image[:, iy0:iy1, ix0:ix1]  # [3, h, w] view
            colour = self._colour(rng, window.mean(axis=(1, 2)))
            window[:, mask] = colour[:, None]
            placed.append(box)
            labels.append(cls)
            boxes.append(np.array([ix0 + cols[0], iy0 + rows[0], ix0 + cols[-1] + 1, iy0 + rows[-1] + 1], np.float32))
        if cfg.noise > 0:
            image += self._noise_field(rng)
        np.clip(image, 0.0, 1.0, out=image)
        image *= 255.0
        image += 0.5
        np.copyto(pixels, image, casting="unsafe")  # truncation: rounds the +0.5 above
        return ToySample(
            pixels.transpose(1, 2, 0),  # [S, S, 3]
            np.array(labels, dtype=np.int64),
            np.stack(boxes) if boxes else np.zeros((0, 4), np.float32),
            index,
        )

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        """A random two-colour linear gradient, [3, S, S] float32 in [0, 1] (channels first:
        numpy is much faster with long inner loops). Returns the shared canvas."""
        c0, c1 = rng.uniform(0.0, 1.0, size=(2, 3, 1, 1)).astype(np.float32)
        c1 = c0 + (c1 - c0) * 0.5  # gentle gradients: the shapes carry the contrast
        angle = rng.uniform(0, 2 * np.pi)
        a, b = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        t = a * self._xs + b * self._ys  # [S, S]
        lo = min(0.0, float(a)) * self.config.image_size + min(0.0, float(b)) * self.config.image_size
        span = (abs(float(a)) + abs(float(b))) * self.config.image_size
        t = (t - np.float32(lo)) * np.float32(1.0 / span)
        # into a persistent canvas: fresh 200 kB arrays per image cost more in page faults than the maths
        np.multiply(t[None], c1 - c0, out=self._canvas)
        self._canvas += c0
        return self._canvas

    def _noise_field(self, rng: np.random.Generator) -> np.ndarray:
        """Pixel noise, [3, S, S] float32: a random window of a fixed bank, cheap to draw."""
        if self._noise_bank is None:
            s = self.config.image_size
            bank_rng = np.random.default_rng(12345)
            self._noise_bank = bank_rng.standard_normal((3, 2 * s, 2 * s), dtype=np.float32) * self.config.noise
        s = self.config.image_size
        oy, ox = rng.integers(0, s, size=2)
        return self._noise_bank[:, oy : oy + s, ox : ox + s]

    def _colour(self, rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
        """A random colour that stands out from the local background mean."""
        best, best_d = None, -1.0
        for _ in range(20):
            c = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
            d = float(np.abs(c - background).sum())
            if d > 0.6:
                return c
            if d > best_d:
                best, best_d = c, d
        return best  # type: ignore[return-value]

    def _place(
        self, rng: np.random.Generator, placed: list[tuple[float, float, float, float]]
    ) -> tuple[float, float, float, float] | None:
        """A box whose overlap with each placed box (intersection over the smaller area) is small."""
        cfg = self.config
        s = cfg.image_size
        for _ in range(30):
            w, h = rng.uniform(cfg.min_side, cfg.max_side, size=2) * s
            x0 = rng.uniform(0, s - w)
            y0 = rng.uniform(0, s - h)
            box = (x0, y0, x0 + w, y0 + h)
            if all(_overlap(box, other) <= cfg.max_overlap for other in placed):
                return box
        return None

    def _shape_mask(
        self, kind: str, rng: np.random.Generator, box: tuple[float, float, float, float],
        ix0: int, iy0: int, ix1: int, iy1: int,
    ) -> np.ndarray:
        """Pixels (by centre) of the shape inside its integer window, [h, w] bool."""
        x0, y0, x1, y1 = box
        xs = self._xs[:, ix0:ix1]
        ys = self._ys[iy0:iy1, :]
        if kind == "rectangle":
            return ((xs >= x0) & (xs < x1)) & ((ys >= y0) & (ys < y1))
        if kind == "ellipse":
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
            return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
        # triangle: one side on a box edge, the apex somewhere on the opposite edge
        side = int(rng.integers(4))
        t = rng.uniform(0.0, 1.0)
        if side == 0:  # base at the bottom, apex on top
            pts = [(x0, y1), (x1, y1), (x0 + t * (x1 - x0), y0)]
        elif side == 1:  # base on top, apex at the bottom
            pts = [(x0, y0), (x1, y0), (x0 + t * (x1 - x0), y1)]
        elif side == 2:  # base on the left, apex on the right
            pts = [(x0, y0), (x0, y1), (x1, y0 + t * (y1 - y0))]
        else:  # base on the right, apex on the left
            pts = [(x1, y0), (x1, y1), (x0, y0 + t * (y1 - y0))]
        inside = np.ones((iy1 - iy0, ix1 - ix0), dtype=bool)
        (ax, ay), (bx, by), (cx, cy) = pts
        sign = np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))
        for (px, py), (qx, qy) in ((pts[0], pts[1]), (pts[1], pts[2]), (pts[2], pts[0])):
            inside &= sign * ((qx - px) * (ys - py) - (qy - py) * (xs - px)) >= 0
        return inside


def heldout_split(dataset_config: ToyDataConfig | None = None, size: int = 500) -> ToyShapes:
    """The fixed held-out toy split (never trained on)."""
    return ToyShapes(dataset_config, seed=HELDOUT_SEED, split="heldout", length=size)


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def collate(items: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Stack equally sized images; targets stay a list (one dict per image)."""
    images = torch.stack([img for img, _ in items])
    return images, [t for _, t in items]
