"""What the lesson pages draw with: a picture (an RGB array with boxes, points, a grid and a
heat overlay, clickable and with draggable boxes) and a bar chart. Both scale their lines and
fonts with the presentation mode."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


def heat_rgb(values: np.ndarray, colormap: str = "inferno", lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """[h, w] floats -> [h, w, 3] uint8 through a colour map (range lo..hi, default min..max)."""
    v = np.asarray(values, dtype=np.float32)
    lo = float(np.nanmin(v)) if lo is None else lo
    hi = float(np.nanmax(v)) if hi is None else hi
    t = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(v)
    lut = pg.colormap.get(colormap).getLookupTable(0.0, 1.0, 256, alpha=False)  # [256, 3] uint8
    return np.ascontiguousarray(lut[(t * 255).astype(np.int64)][..., :3].astype(np.uint8))


def tile(images: list[np.ndarray], columns: int, gap: int = 1) -> np.ndarray:
    """Equal-size [h, w, 3] uint8 images in a grid with ``gap`` black pixels between them."""
    h, w = images[0].shape[:2]
    rows = -(-len(images) // columns)
    out = np.zeros((rows * (h + gap) - gap, columns * (w + gap) - gap, 3), np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = im
    return out


def to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@dataclass
class Box:
    xyxy: tuple[float, float, float, float]  # image pixels
    color: str | QColor = "#ffffff"
    label: str = ""
    dashed: bool = False
    width: float = 2.0
    label_below: bool = False  # the label under the box (two boxes' labels then do not collide)


@dataclass
class Overlay:
    """What a picture draws over its image."""

    boxes: list[Box] = field(default_factory=list)
    points: list[tuple[float, float, str]] = field(default_factory=list)  # (y, x, colour) image px
    lines: list[tuple[float, float, float, float, str]] = field(default_factory=list)  # y0, x0, y1, x1, colour
    grid: tuple[int, int, float, float] | None = None  # (rows, cols, height, width) in image px
    cell: tuple[float, float, float, float, str] | None = None  # a highlighted rectangle y0, x0, y1, x1, colour
    heat: np.ndarray | None = None  # [h, w, 3] uint8 drawn over the grid extent (or the image)
    heat_extent: tuple[float, float] | None = None  # (height, width) image px the heat covers
    heat_opacity: float = 0.6


class Picture(QWidget):
    """An RGB image fitted to the widget (aspect kept) with an :class:`Overlay` on top.

    ``clicked(y, x)`` in image pixels; boxes whose indices are in ``draggable`` can be dragged:
    ``boxMoved(index, dy, dx)`` once the button is released (image pixels)."""

    clicked = Signal(float, float)
    boxMoved = Signal(int, float, float)

    def __init__(self, min_side: int = 120, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rgb: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._heat: QImage | None = None
        self.overlay = Overlay()
        self.draggable: set[int] = set()
        self.scale_lines = 1.0  # presentation mode: thicker lines, larger labels
        self.caption = ""
        self._drag: tuple[int, QPointF] | None = None
        self._drag_offset = QPointF(0, 0)
        self.setMinimumSize(min_side, min_side)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(320, 320)

    def set_content(self, rgb: np.ndarray | None, overlay: Overlay | None = None) -> None:
        self.rgb = rgb
        self._qimage = to_qimage(rgb) if rgb is not None else None
        self.set_overlay(overlay or Overlay())

    def set_overlay(self, overlay: Overlay) -> None:
        self.overlay = overlay
        self._heat = to_qimage(overlay.heat) if overlay.heat is not None else None
        self.update()

    # --- geometry ---------------------------------------------------------------------------
    def _target(self) -> QRectF:
        if self.rgb is None:
            return QRectF(0, 0, 1, 1)
        h, w = self.rgb.shape[:2]
        top = 22.0 * (1 + (self.scale_lines - 1) * 0.5) if self.caption else 0.0
        s = min(self.width() / w, (self.height() - top) / h)
        return QRectF((self.width() - w * s) / 2, top + (self.height() - top - h * s) / 2, w * s, h * s)

    def to_image(self, pos: QPointF) -> tuple[float, float]:
        """Widget position -> (y, x) image pixels."""
        t = self._target()
        h, w = self.rgb.shape[:2] if self.rgb is not None else (1, 1)
        return (pos.y() - t.y()) / t.height() * h, (pos.x() - t.x()) / t.width() * w

    def to_widget(self, y: float, x: float) -> QPointF:
        t = self._target()
        h, w = self.rgb.shape[:2] if self.rgb is not None else (1, 1)
        return QPointF(t.x() + x / w * t.width(), t.y() + y / h * t.height())

    # --- painting ---------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#202124"))
        k = self.scale_lines
        text_k = 1 + (k - 1) * 0.5  # text grows less than lines: it must still fit the picture
        if self.caption:
            font = QFont(self.font())
            font.setPointSizeF(9 * text_k)
            p.setFont(font)
            p.setPen(QColor("#e8eaed"))
            p.drawText(QRectF(0, 0, self.width(), 22 * text_k), Qt.AlignmentFlag.AlignCenter, self.caption)
        if self._qimage is None:
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        t = self._target()
        p.drawImage(t, self._qimage)
        o = self.overlay
        if self._heat is not None:
            eh, ew = o.heat_extent or self.rgb.shape[:2]  # type: ignore[union-attr]
            p.setOpacity(o.heat_opacity)
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRectF(self.to_widget(0, 0), self.to_widget(eh, ew)), self._heat)
            p.setOpacity(1.0)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if o.grid is not None:
            rows, cols, gh, gw = o.grid
            p.setPen(QPen(QColor(255, 255, 255, 110), 1 * k))
            for r in range(rows + 1):
                p.drawLine(self.to_widget(r * gh / rows, 0), self.to_widget(r * gh / rows, gw))
            for c in range(cols + 1):
                p.drawLine(self.to_widget(0, c * gw / cols), self.to_widget(gh, c * gw / cols))
        if o.cell is not None:
            y0, x0, y1, x1, colour = o.cell
            p.setPen(QPen(QColor(colour), 2.5 * k))
            p.drawRect(QRectF(self.to_widget(y0, x0), self.to_widget(y1, x1)))
        for y0, x0, y1, x1, colour in o.lines:
            p.setPen(QPen(QColor(colour), 1.5 * k, Qt.PenStyle.DotLine))
            p.drawLine(self.to_widget(y0, x0), self.to_widget(y1, x1))
        font = QFont(self.font())
        font.setPointSizeF(8 * text_k)
        font.setBold(True)
        p.setFont(font)
        for index, b in enumerate(o.boxes):
            x0, y0, x1, y1 = b.xyxy
            shift = self._drag_offset if self._drag is not None and self._drag[0] == index else QPointF(0, 0)
            pen = QPen(QColor(b.color), b.width * k, Qt.PenStyle.DashLine if b.dashed else Qt.PenStyle.SolidLine)
            p.setPen(pen)
            rect = QRectF(self.to_widget(y0, x0) + shift, self.to_widget(y1, x1) + shift)
            p.drawRect(rect)
            if b.label:
                where = rect.bottomLeft() + QPointF(2, p.fontMetrics().ascent() + 2) if b.label_below else \
                    rect.topLeft() + QPointF(2, -3)
                p.drawText(where, b.label)
        for y, x, colour in o.points:
            p.setPen(QPen(QColor(colour), 3 * k))
            c = self.to_widget(y, x)
            r = 6 * k
            p.drawLine(c + QPointF(-r, 0), c + QPointF(r, 0))
            p.drawLine(c + QPointF(0, -r), c + QPointF(0, r))
        p.end()

    # --- mouse ------------------------------------------------------------------------------
    def _box_at(self, pos: QPointF) -> int | None:
        y, x = self.to_image(pos)
        for index in sorted(self.draggable, reverse=True):  # the box drawn last is on top
            if index < len(self.overlay.boxes):
                x0, y0, x1, y1 = self.overlay.boxes[index].xyxy
                if x0 <= x <= x1 and y0 <= y <= y1:
                    return index
        return None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.rgb is None or event.button() != Qt.MouseButton.LeftButton:
            return
        index = self._box_at(event.position())
        if index is not None:
            self._drag = (index, event.position())
            self._drag_offset = QPointF(0, 0)
            return
        y, x = self.to_image(event.position())
        h, w = self.rgb.shape[:2]
        if 0 <= y < h and 0 <= x < w:
            self.clicked.emit(y, x)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag is not None:
            self._drag_offset = event.position() - self._drag[1]
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag is None:
            return
        index, start = self._drag
        self._drag = None
        t = self._target()
        h, w = self.rgb.shape[:2] if self.rgb is not None else (1, 1)
        d = event.position() - start
        self._drag_offset = QPointF(0, 0)
        if d.manhattanLength() > 1:
            self.boxMoved.emit(index, d.y() / t.height() * h, d.x() / t.width() * w)
        self.update()


# chart text in presentation mode, in points (the lesson's own text is 18, its titles 22)
CHART_POINTS = {"tick": 13, "label": 14, "title": 16, "legend": 13}


def present_chart(widget: pg.PlotWidget, on: bool) -> None:
    """A chart's title, axis labels, tick labels and legend at projector size (``on``), or back
    to pyqtgraph's own sizes; the plotted data is left as it is."""
    item = widget.getPlotItem()
    pts = CHART_POINTS
    tick_font = None
    if on:
        tick_font = QFont(widget.font())
        tick_font.setPointSize(pts["tick"])
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setTickFont(tick_font)
        style = {k: v for k, v in axis.labelStyle.items() if k != "font-size"}
        if on:
            style["font-size"] = f"{pts['label']}pt"
        axis.labelStyle = style
        if axis.labelText or axis.labelUnits:
            axis.setLabel(axis.labelText, axis.labelUnits, axis.labelUnitPrefix, **style)
    title = item.titleLabel
    if title.isVisible() and title.text:
        title.opts.pop("size", None)
        height = 30  # pyqtgraph's title row
        if on:
            title.opts["size"] = f"{pts['title']}pt"
            height = int(pts["title"] * 2.2)
        title.setText(title.text)
        title.setMaximumHeight(height)
        item.layout.setRowFixedHeight(0, height)
    legend = item.legend
    if legend is not None:
        legend.setLabelTextSize(f"{pts['legend']}pt" if on else "9pt")
        for _, label in legend.items:  # (setLabelTextSize stores the size; setText draws it)
            label.setText(label.text)


class BarChart(pg.PlotWidget):
    """Bars with category names under them (pyqtgraph), updated with :meth:`set_bars`."""

    def __init__(self, title: str = "", y_label: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#202124")
        self.setMinimumHeight(110)
        self.plot_item = self.getPlotItem()
        self.plot_item.setTitle(title)
        self.plot_item.setLabel("left", y_label)
        self.plot_item.setMenuEnabled(False)
        self.plot_item.setMouseEnabled(x=False, y=False)
        self.plot_item.hideButtons()
        self.bars: list[pg.BarGraphItem] = []
        self.values: np.ndarray = np.zeros(0)

    def set_bars(self, values: list[float] | np.ndarray, names: list[str], colors: list[str] | None = None,
                 series: list[np.ndarray] | None = None, series_colors: list[str] | None = None,
                 y_range: tuple[float, float] | None = None) -> None:
        """One bar per name; or with ``series``, groups of bars (one per series) per name."""
        for b in self.bars:
            self.plot_item.removeItem(b)
        self.bars = []
        groups = series if series is not None else [np.asarray(values, dtype=float)]
        n = len(groups)
        width = 0.8 / n
        for s, vals in enumerate(groups):
            x = np.arange(len(vals)) - 0.4 + width * (s + 0.5)
            brushes = colors if (colors and series is None) else [(series_colors or ["#4dabf7"] * n)[s]] * len(vals)
            bar = pg.BarGraphItem(x=x, height=np.nan_to_num(np.asarray(vals, float)), width=width * 0.9,
                                  brushes=brushes)
            self.plot_item.addItem(bar)
            self.bars.append(bar)
        self.values = np.concatenate([np.asarray(g, float) for g in groups]) if groups else np.zeros(0)
        ax = self.plot_item.getAxis("bottom")
        step = max(1, len(names) // 25)
        ax.setTicks([[(i, names[i]) for i in range(0, len(names), step)]])
        self.plot_item.setXRange(-0.6, max(len(names), 1) - 0.4, padding=0)
        if y_range is not None:
            self.plot_item.setYRange(*y_range, padding=0.02)
        else:
            self.plot_item.enableAutoRange(axis="y")
