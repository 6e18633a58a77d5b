"""A distinct colour per object query, stable across images and runs."""

from __future__ import annotations

import colorsys

from PySide6.QtGui import QColor

_BASE = [
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
    "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000",
    "#ffd8b1", "#000075", "#a9a9a9", "#ffe119",
]


def query_color(index: int) -> QColor:
    """20 hand-picked distinct colours, then golden-angle hues for larger query sets."""
    if index < len(_BASE):
        return QColor(_BASE[index])
    hue = (index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return QColor.fromRgbF(r, g, b)


# denoising groups: red, blue, orange, magenta, cyan, yellow first (clear on the toy images' green
# and grey backgrounds, and apart from the white of the ground truth)
_GROUPS = ["#e6194b", "#4363d8", "#f58231", "#f032e6", "#42d4f4", "#ffe119"]


def group_color(group: int) -> QColor:
    """One colour per denoising group, then the query palette's."""
    return QColor(_GROUPS[group]) if 0 <= group < len(_GROUPS) else query_color(group)
