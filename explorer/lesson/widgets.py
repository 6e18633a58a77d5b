"""What the lesson pages draw with: a picture (an RGB array with boxes, points, a grid and a
heat overlay, clickable and with draggable boxes), bar charts and heatmaps with axes and a colour
bar. All scale their lines and fonts with the presentation mode."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QFontMetricsF,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsRectItem,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)


def heat_rgb(values: np.ndarray, colormap: str = "inferno", lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """[h, w] floats -> [h, w, 3] uint8 through a colour map (range lo..hi, default min..max)."""
    v = np.asarray(values, dtype=np.float32)
    lo = float(np.nanmin(v)) if lo is None else lo
    hi = float(np.nanmax(v)) if hi is None else hi
    t = np.clip((v - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(v)
    lut = pg.colormap.get(colormap).getLookupTable(0.0, 1.0, 256, alpha=False)  # [256, 3] uint8
    return np.ascontiguousarray(lut[(t * 255).astype(np.int64)][..., :3].astype(np.uint8))


def text_color(background: QColor) -> QColor:
    """Black or white, whichever reads better on ``background``."""
    luminance = 0.299 * background.redF() + 0.587 * background.greenF() + 0.114 * background.blueF()
    return QColor("#000000") if luminance > 0.55 else QColor("#ffffff")


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


QWIDGETSIZE_MAX = (1 << 24) - 1


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
        self._fit_width()
        self.set_overlay(overlay or Overlay())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_width()

    def _fit_width(self) -> None:
        """No wider than the image needs at the picture's height: the width left over goes to the
        charts beside it (a layout gives the height, which does not depend on the widths)."""
        if self.rgb is None:
            self.setMaximumWidth(QWIDGETSIZE_MAX)
            return
        h, w = self.rgb.shape[:2]
        need = int(np.ceil((self.height() - self._caption_height()) * w / max(h, 1))) + 2
        if self.maximumWidth() != max(need, self.minimumWidth()):
            self.setMaximumWidth(max(need, self.minimumWidth()))

    def set_overlay(self, overlay: Overlay) -> None:
        self.overlay = overlay
        self._heat = to_qimage(overlay.heat) if overlay.heat is not None else None
        self.update()

    # --- geometry ---------------------------------------------------------------------------
    def _target(self) -> QRectF:
        if self.rgb is None:
            return QRectF(0, 0, 1, 1)
        h, w = self.rgb.shape[:2]
        top = self._caption_height()
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

    def _caption_height(self) -> float:
        return QFontMetricsF(self.font()).height() + 8 if self.caption else 0.0

    # --- painting ---------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:
        # the texts are in the widget's font: the presentation mode's style sheet enlarges it
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#202124"))
        k = self.scale_lines
        if self.caption:
            p.setFont(self.font())
            p.setPen(QColor("#e8eaed"))
            p.drawText(QRectF(0, 0, self.width(), self._caption_height()), Qt.AlignmentFlag.AlignCenter, self.caption)
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
        font.setPointSizeF(self.font().pointSizeF() * 0.9)
        font.setBold(True)
        p.setFont(font)
        placed: list[QRectF] = []  # the labels drawn so far
        for index, b in enumerate(o.boxes):
            x0, y0, x1, y1 = b.xyxy
            shift = self._drag_offset if self._drag is not None and self._drag[0] == index else QPointF(0, 0)
            pen = QPen(QColor(b.color), b.width * k, Qt.PenStyle.DashLine if b.dashed else Qt.PenStyle.SolidLine)
            p.setPen(pen)
            rect = QRectF(self.to_widget(y0, x0) + shift, self.to_widget(y1, x1) + shift)
            p.drawRect(rect)
            if b.label:
                where = self._label_place(rect, b.label, b.label_below, p.fontMetrics(), placed)
                placed.append(where)
                p.fillRect(where, QColor(b.color))  # the box's colour behind, readable on any image
                p.setPen(text_color(QColor(b.color)))
                p.drawText(where, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, b.label)
        for y, x, colour in o.points:
            p.setPen(QPen(QColor(colour), 3 * k))
            c = self.to_widget(y, x)
            r = 6 * k
            p.drawLine(c + QPointF(-r, 0), c + QPointF(r, 0))
            p.drawLine(c + QPointF(0, -r), c + QPointF(0, r))
        p.end()

    def _label_place(self, box: QRectF, text: str, below: bool, metrics: QFontMetrics,
                     placed: list[QRectF]) -> QRectF:
        """Where a box's label goes: above the box (below it with ``below``), else on the other
        side, else just inside its top; the first place inside the widget that no label drawn
        before covers (two close boxes' labels do not overlap, and none is cut at the top)."""
        w, h = metrics.horizontalAdvance(text) + 4, metrics.height()
        above = QRectF(box.left(), box.top() - h - 1, w, h)
        under = QRectF(box.left(), box.bottom() + 1, w, h)
        inside = QRectF(box.left() + 2, box.top() + 2, w, h)
        candidates = [under, above, inside] if below else [above, under, inside]
        bounds = QRectF(self.rect())
        for rect in candidates:
            rect.moveLeft(max(0.0, min(rect.left(), bounds.right() - w)))
        fits = [r for r in candidates if bounds.contains(r)] or [inside]
        return next((r for r in fits if not any(r.intersects(q) for q in placed)), fits[0])

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


# --- charts ---------------------------------------------------------------------------------------
CHART_BACKGROUND = "#202124"


def chart_points(base: float) -> dict[str, int]:
    """The charts' text sizes in points for a window font of ``base`` points (14 in presentation
    mode): tick values a point smaller than the window's text, axis labels as large, titles larger."""
    return {"tick": round(base - 1), "label": round(base), "title": round(base + 2), "legend": round(base - 1)}


def chart_axes(widget: pg.PlotWidget) -> list[pg.AxisItem]:
    """Every axis a chart draws: its plot's and its colour bar's."""
    return [item for item in widget.scene().items() if isinstance(item, pg.AxisItem)]


def present_chart(widget: pg.PlotWidget, on: bool, base: float = 14.0) -> None:
    """A chart's title, axis labels, tick labels (its colour bar's too) and legend at projector
    size (``on``, from the window font of ``base`` points), or back to pyqtgraph's own sizes;
    the plotted data is left as it is."""
    item = widget.getPlotItem()
    pts = chart_points(base)
    tick_font = None
    if on:
        tick_font = QFont(widget.font())
        tick_font.setPointSize(pts["tick"])
    for axis in chart_axes(widget):
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


def tick_font(axis: pg.AxisItem) -> QFont:
    """The font an axis draws its tick values in (pyqtgraph paints them on a QPicture, whose
    default font is the application's)."""
    return axis.style["tickFont"] or QApplication.font()


class Chart(QWidget):
    """A pyqtgraph plot under its title and an optional legend. The title is a word-wrapped label:
    it never makes the chart wider than its room (pyqtgraph's title does: a long title made the
    plot wider than its widget, which then cut off its right side), and it follows the lesson's
    fonts. The panel's style sheet gives the colours and sizes (``#lesson_chart...``)."""

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("lesson_chart")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.title_label = QLabel(title)
        self.title_label.setObjectName("lesson_chart_title")
        self.legend_label = QLabel("")
        self.legend_label.setObjectName("lesson_chart_legend")
        for label in (self.title_label, self.legend_label):
            label.setWordWrap(True)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.title_label.setVisible(bool(title))
        self.legend_label.hide()
        self.plot_widget = pg.PlotWidget(background=CHART_BACKGROUND)
        self.plot_widget.setMinimumSize(60, 60)
        self.plot_item = self.plot_widget.getPlotItem()
        self.plot_item.setMenuEnabled(False)
        self.plot_item.setMouseEnabled(x=False, y=False)
        self.plot_item.hideButtons()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 2)
        layout.setSpacing(2)
        layout.addWidget(self.title_label)
        layout.addWidget(self.legend_label)
        layout.addWidget(self.plot_widget, 1)
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._fit_margins()

    def _fit_margins(self) -> None:
        """Room above and below the plot for half a tick value: the top and bottom values of the
        left axis (and of a colour bar) are centred on the plot's edges and would be cut."""
        metrics = QFontMetricsF(tick_font(self.plot_item.getAxis("left")))
        half = int(metrics.height() / 2) + 2
        # and beside it for half the last value under it ("1.0" at the right edge)
        right = int(metrics.horizontalAdvance("0.00") / 2) + 2
        self.plot_item.layout.setContentsMargins(2, half, right, 2)
        self.plot_item.getAxis("bottom").setStyle(hideOverlappingLabels=right)

    @property
    def title(self) -> str:
        return self.title_label.text()

    def set_legend(self, entries: list[tuple[str, str]]) -> None:
        """(name, colour) pairs shown as coloured squares above the plot (never over the data); a
        name without a colour is shown as it is."""
        self.legend_label.setText("&nbsp;&nbsp; ".join(f"<span style='color:{c}'>■</span>&nbsp;{name}" if c else name
                                                       for name, c in entries))
        self.legend_label.setVisible(bool(entries))

    def set_presentation(self, on: bool, base: float) -> None:
        present_chart(self.plot_widget, on, base)
        self._fit_margins()


class BarChart(Chart):
    """Bars with category names beside them, updated with :meth:`set_bars`: upright bars with the
    names under them, or (``horizontal``, for long names such as class names) bars to the right
    of their names. Names that would collide are wrapped at their spaces, else every k-th is shown
    (k from 1, 2, 5, 10, ...); the range leaves room for the first and last names, so they are
    never cut at the chart's edges."""

    def __init__(self, title: str = "", value_label: str = "", name_label: str = "", horizontal: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.horizontal = horizontal
        self.name_axis = "left" if horizontal else "bottom"
        self.value_axis = "bottom" if horizontal else "left"
        if value_label:
            self.plot_item.setLabel(self.value_axis, value_label)
        if name_label:
            self.plot_item.setLabel(self.name_axis, name_label)
        self.plot_item.getAxis(self.value_axis).enableAutoSIPrefix(False)  # 0.005, not "(x0.001)" by the label
        self.plot_item.invertY(horizontal)  # the first name on top
        self.bars: list[pg.BarGraphItem] = []
        self.values: np.ndarray = np.zeros(0)
        self.names: list[str] = []
        self.shown_names: list[tuple[int, str]] = []  # (index, text) of the names shown by the bars
        self.tick_step = 1
        self.plot_item.getViewBox().sigResized.connect(self._fit_names)

    def set_bars(self, values: list[float] | np.ndarray, names: list[str], colors: list[str] | None = None,
                 series: list[np.ndarray] | None = None, series_colors: list[str] | None = None,
                 y_range: tuple[float, float] | None = None) -> None:
        """One bar per name; or with ``series``, groups of bars (one per series) per name. A name
        may hold a line break. ``y_range``: of the values."""
        for b in self.bars:
            self.plot_item.removeItem(b)
        self.bars = []
        groups = series if series is not None else [np.asarray(values, dtype=float)]
        n = len(groups)
        width = 0.8 / n
        for s, vals in enumerate(groups):
            at = np.arange(len(vals)) - 0.4 + width * (s + 0.5)
            brushes = colors if (colors and series is None) else [(series_colors or ["#4dabf7"] * n)[s]] * len(vals)
            size = np.nan_to_num(np.asarray(vals, float))
            bar = pg.BarGraphItem(x0=0, y=at, width=size, height=width * 0.9, brushes=brushes) if self.horizontal \
                else pg.BarGraphItem(x=at, height=size, width=width * 0.9, brushes=brushes)
            self.plot_item.addItem(bar)
            self.bars.append(bar)
        self.values = np.concatenate([np.asarray(g, float) for g in groups]) if groups else np.zeros(0)
        self.names = list(names)
        value_axis = "x" if self.horizontal else "y"
        if y_range is not None:
            self.plot_item.getViewBox().setRange(**{f"{value_axis}Range": y_range}, padding=0.02)
        else:
            self.plot_item.enableAutoRange(axis=value_axis)
        self._fit_names()

    def _fit_names(self, *_: object) -> None:
        """Which names to show and the range along them, for the plot's size in pixels now."""
        n = len(self.names)
        axis = self.plot_item.getAxis(self.name_axis)
        if n == 0:
            axis.setTicks([[]])
            return
        metrics = QFontMetricsF(tick_font(axis))
        view = self.plot_item.getViewBox()
        pixels = max(view.height() if self.horizontal else view.width(), 1.0)
        if self.horizontal:  # names one above the other: their height counts
            candidates = [self.names]
            gap = 2.0
        else:  # side by side: their width; else with a line per word ("no object" over two lines)
            candidates = [self.names, [name if "\n" in name else name.replace(" ", "\n") for name in self.names]]
            gap = metrics.horizontalAdvance("  ")
        for names in candidates:
            if self.horizontal:
                widest = max(name.count("\n") + 1 for name in names) * metrics.lineSpacing()
            else:
                widest = max(max(metrics.horizontalAdvance(line) for line in name.split("\n")) for name in names)
            # room at each end for half the widest name: pad categories on either side of the bars
            half = widest / 2 + 2
            pad = 0.6
            if n > 1 and pixels > 2 * half + 1:
                pad = max(pad, half * (n - 1) / (pixels - 2 * half))
            per_category = pixels / (n - 1 + 2 * pad)
            self.tick_step = next((k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500)
                                   if widest + gap <= k * per_category), 1000)
            if self.tick_step == 1:
                break
        self.shown_names = [(i, names[i]) for i in range(0, n, self.tick_step)]
        axis.setTicks([self.shown_names])
        if self.horizontal:
            view.setYRange(-pad, n - 1 + pad, padding=0)
        else:
            view.setXRange(-pad, n - 1 + pad, padding=0)
        # the room the names need across the axis (pyqtgraph counts 80% of a text's height, and cuts
        # two lines; and widens an axis only after it has drawn it too narrow once)
        label = axis.label.boundingRect().height() if axis.label.isVisible() else 0.0
        if self.horizontal:
            text = max(max(metrics.horizontalAdvance(line) for line in name.split("\n")) for _, name in self.shown_names)
            axis.setWidth(int(max(0, axis.style["tickLength"]) + axis.style["tickTextOffset"][0] + text + label + 6))
        else:
            lines = max(name.count("\n") + 1 for _, name in self.shown_names)
            axis.setHeight(int(max(0, axis.style["tickLength"]) + axis.style["tickTextOffset"][1]
                               + lines * metrics.lineSpacing() + label + 4))

    def set_presentation(self, on: bool, base: float) -> None:
        super().set_presentation(on, base)
        self._fit_names()


def mosaic(maps: list[np.ndarray], columns: int, gap: int = 1) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Equal-size [h, w] maps in a grid, ``gap`` cells of NaN (drawn transparent) between them;
    and each map's top-left (row, column) in the mosaic."""
    h, w = maps[0].shape[:2]
    rows = -(-len(maps) // columns)
    out = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, np.float32)
    corners = []
    for k, m in enumerate(maps):
        r, c = divmod(k, columns)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = m
        corners.append((r * (h + gap), c * (w + gap)))
    return out, corners


class HeatmapChart(Chart):
    """A matrix of values (or a :func:`mosaic` of maps) drawn through a colour map, with axes and a
    colour bar that says what a colour means. Row 0 is at the top. ``square``: cells keep their
    aspect (maps of the image); otherwise the matrix fills the chart (a cost matrix).

    Of the ticks given, every k-th is shown (k from 1, 2, 5, 10, ...) so that their texts do not
    collide at the chart's size; the colour bar's meaning is written along it when it fits there,
    else above the plot."""

    def __init__(self, title: str, x_label: str, y_label: str, bar_label: str, colormap: str = "inferno",
                 reverse: bool = False, square: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot_item.addItem(self.image)
        self.plot_item.invertY(True)
        self.plot_item.setAspectLocked(square)
        self.plot_item.setLabel("bottom", x_label)
        self.plot_item.setLabel("left", y_label)
        cmap = pg.colormap.get(colormap)
        if reverse:  # bright for low values (a cost: cheap); colormap.get's maps are shared: a copy
            cmap = copy.deepcopy(cmap)
            cmap.reverse()
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), width=12, colorMap=cmap, label=bar_label,
                                        interactive=False, rounding=1e-6, colorMapMenu=False)
        self.colorbar.axis.enableAutoSIPrefix(False)
        self.colorbar.setImageItem(self.image, insert_in=self.plot_item)
        self.bar_label = bar_label
        self.marks: list[QGraphicsRectItem] = []
        self.tile_labels: list[pg.TextItem] = []
        self.values: np.ndarray = np.zeros((0, 0), np.float32)
        self.ticks: dict[str, list[tuple[float, str]] | None] = {"bottom": None, "left": None}  # as given
        self._base = 0.0  # the presentation font (0: normal)
        self.plot_item.getViewBox().sigResized.connect(self._fit)
        self._fit_colorbar()

    def set_values(self, values: np.ndarray, levels: tuple[float, float] | None = None,
                   x_ticks: list[tuple[float, str]] | None = None,
                   y_ticks: list[tuple[float, str]] | None = None) -> None:
        """Show ``values`` [rows, columns] (NaN: nothing) between ``levels`` (default: their range);
        ticks as (position in cells, text), default every whole number that fits."""
        v = np.asarray(values, np.float32)
        self.values = v
        finite = v[np.isfinite(v)]
        lo, hi = levels if levels is not None else \
            ((float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0))
        if hi <= lo:
            hi = lo + 1e-6
        self.image.setImage(v, levels=(lo, hi))
        self.colorbar.setLevels((lo, hi))
        self.ticks = {"bottom": x_ticks, "left": y_ticks}
        for mark in self.marks:
            self.plot_item.removeItem(mark)
        self.marks = []
        for label in self.tile_labels:
            self.plot_item.removeItem(label)
        self.tile_labels = []
        self.plot_item.setRange(xRange=(0, max(v.shape[1], 1)), yRange=(0, max(v.shape[0], 1)), padding=0)
        self._fit()

    def _fit(self, *_: object) -> None:
        self._fit_ticks()
        self._fit_colorbar()

    def _fit_ticks(self) -> None:
        """Every k-th of the given ticks, k the least whose texts keep apart at this size."""
        view = self.plot_item.getViewBox()
        (x0, x1), (y0, y1) = view.viewRange()
        for name, ticks in self.ticks.items():
            axis = self.plot_item.getAxis(name)
            if not ticks:
                axis.setTicks(None if ticks is None else [[]])
                continue
            metrics = QFontMetricsF(tick_font(axis))
            if name == "bottom":
                per_unit = view.width() / max(x1 - x0, 1e-9)
                size = max(metrics.horizontalAdvance(text) for _, text in ticks) + metrics.horizontalAdvance("  ")
            else:
                per_unit = view.height() / max(y1 - y0, 1e-9)
                size = metrics.height() + 2
            positions = [at for at, _ in ticks]
            spacing = min((b - a for a, b in zip(positions, positions[1:])), default=1.0) * per_unit
            step = next((k for k in (1, 2, 5, 10, 20, 50, 100, 200, 500) if k * spacing >= size), 1000)
            axis.setTicks([ticks[::step]])

    @property
    def bar_label_shown(self) -> bool:
        """The colour bar's meaning is written along it (else above the plot)."""
        return self.colorbar.getAxis("left").label.isVisible()

    def mark(self, row: float, column: float, rows: float = 1, columns: float = 1, color: str = "#ffffff") -> None:
        """Outline a cell (or a block of cells)."""
        rect = QGraphicsRectItem(column, row, columns, rows)
        pen = QPen(QColor(color), 2)
        pen.setCosmetic(True)
        rect.setPen(pen)
        rect.setZValue(10)
        self.plot_item.addItem(rect)
        self.marks.append(rect)

    def label_tile(self, row: float, column: float, text: str, color: str = "#ffffff") -> None:
        """A text at a cell position (a tile's name in a mosaic), its top-left corner there."""
        label = pg.TextItem(text, color=text_color(QColor(color)), anchor=(0, 0), fill=pg.mkBrush(color))
        label.setPos(column, row)
        label.setZValue(11)
        self._size_label(label)
        self.plot_item.addItem(label)
        self.tile_labels.append(label)

    def _size_label(self, label: pg.TextItem) -> None:
        font = QFont(QApplication.font())
        if self._base:
            font.setPointSize(chart_points(self._base)["tick"])
        label.setFont(font)

    def _fit_colorbar(self) -> None:
        """Room for the colour bar's widest value (pyqtgraph keeps its axis at a fixed width), and
        its meaning along it when it fits the bar's length, else above the plot."""
        axis = self.colorbar.axis
        lo, hi = self.colorbar.levels()
        metrics = QFontMetricsF(tick_font(axis))
        texts = axis.tickStrings([lo, hi, (lo + hi) / 2], 1.0, max((hi - lo) / 4, 1e-9))
        axis.setWidth(int(max(metrics.horizontalAdvance(t) for t in [*texts, "0.000"]) + 14))
        side = self.colorbar.getAxis("left")
        length = side.label.document().idealWidth()
        along = length <= self.plot_item.getViewBox().height() or self.plot_item.getViewBox().height() <= 1
        if along != side.label.isVisible():
            side.showLabel(along)
        self.set_legend([] if along else [(f"colour: {self.bar_label}", "")])

    def set_presentation(self, on: bool, base: float) -> None:
        self._base = base if on else 0.0
        super().set_presentation(on, base)
        for label in self.tile_labels:
            self._size_label(label)
        self._fit_colorbar()
