"""The ten pages, in the paper's order: backbone, positional encoding, encoder, object queries
and decoder, prediction heads, Hungarian matching, the set loss, training, inference without NMS;
then the first lever past the paper, DN-DETR's denoising queries. Each draws its block live from
the application state; experiments run on a copy of the model."""

from __future__ import annotations

import re
import weakref
from typing import Any

import numpy as np
import pyqtgraph as pg
import torch
from PySide6.QtWidgets import QComboBox, QLabel, QSpinBox, QVBoxLayout

from detr_core.analysis import lesson as core
from detr_core.analysis.capture import InferenceResult
from detr_core.analysis.denoising import (
    HOW_TO_TURN_ON,
    DenoisingSnapshot,
    capture_denoising,
    no_denoising_reason,
    noised_inputs,
)
from detr_core.analysis.instability import InstabilityComparison, denoising_instability_experiment
from detr_core.analysis.matching import (
    COST_PART_NAMES,
    COST_PARTS,
    MatchingSnapshot,
    match_image,
    matcher_for,
)
from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.data.dataset import target_dict
from detr_core.data.images import to_tensor
from detr_core.data.toy import ToyShapes
from detr_core.presets import preset
from detr_core.train.trainer import History

from ..colors import group_color, query_color
from ..state import LoadedModel
from .page import LessonPage
from .widgets import BarChart, Box, Chart, HeatmapChart, Overlay, Picture, heat_rgb, mosaic

NO_RESULT = "The model has not run on this image yet."


def index_ticks(n: int) -> list[tuple[float, str]]:
    """Ticks for indices 0..n-1 at the centres of their cells (a chart shows those that fit)."""
    return [(i + 0.5, str(i)) for i in range(n)]


def centre_ticks(names: list[str], size: int, gap: int) -> list[tuple[float, str]]:
    """Ticks at the centres of tiles of ``size`` cells with ``gap`` cells between them."""
    return [(k * (size + gap) + size / 2, name) for k, name in enumerate(names)]


def _kept_boxes(result: InferenceResult, queries: list[int], dashed: bool = False, color: str | None = None) -> list[Box]:
    out = []
    for q in queries:
        x0, y0, x1, y1 = (float(v) for v in result.boxes_xyxy[q])
        name = result.class_names[int(result.labels[q])] if int(result.labels[q]) < len(result.class_names) else "?"
        out.append(Box((x0, y0, x1, y1), color or query_color(q), f"q{q} {name} {float(result.scores[q]):.2f}", dashed))
    return out


class _PicturePage(LessonPage):
    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.picture = Picture()
        self.live.addWidget(self.picture, 3)

    def set_presentation(self, on: bool) -> None:
        for p in self.findChildren(Picture):
            p.scale_lines = 2.0 if on else 1.0
            p.update()

    def has_result(self) -> bool:
        """True when a result of the open model on the current image is there to draw; else the
        page says so."""
        if self.state.result is None or self.state.model is None or self.state.image is None:
            self.info_label.setText(NO_RESULT)
            return False
        return True

    def _pick_cell(self, y: float, x: float) -> None:
        """A click on the picture selects the feature cell under it (pages with a ``cell``)."""
        if self.state.result is not None:
            self.cell = self.state.result.cell_at(y, x)
            self.draw()

    def live_data(self) -> np.ndarray:
        parts = [self.picture.rgb.ravel().astype(np.float32)] if self.picture.rgb is not None else []
        parts += [np.asarray(b.xyxy, np.float32) for b in self.picture.overlay.boxes]
        return np.concatenate(parts) if parts else np.zeros(0)


# --- 1. Backbone -------------------------------------------------------------------------------
class BackbonePage(_PicturePage):
    title = "1 · Backbone: the image becomes a grid of feature vectors"
    text = ("A CNN turns the image into a small grid of feature vectors, one per cell. Each cell is a "
            "token for the transformer: its stride says how many input pixels one cell spans, its "
            "receptive field how much of the image can influence it. Click a cell.")
    question = "Why does a smaller input give the transformer less work?"
    experiment_name = "Run at half size"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.cell: tuple[int, int] | None = None
        self.grid: core.BackboneGrid | None = None
        self.picture.clicked.connect(self._pick_cell)
        self.live.addStretch(1)  # the room the picture does not need (it is as wide as its image)

    def draw(self) -> None:
        if not self.has_result():
            return
        r, loaded = self.state.result, self.state.model
        self.grid = g = core.backbone_grid(loaded.model, r)
        eh, ew = r.grid_extent()
        o = Overlay(grid=(g.feature_size[0], g.feature_size[1], eh, ew))
        info = (f"input {g.input_size[1]}×{g.input_size[0]} px → grid {g.feature_size[1]}×{g.feature_size[0]} "
                f"= <b>{g.tokens} tokens</b><br>stride {g.stride} px per cell<br>theoretical receptive field "
                f"{g.receptive_field}×{g.receptive_field} input px")
        if self.cell is not None:
            i, j = min(self.cell[0], g.feature_size[0] - 1), min(self.cell[1], g.feature_size[1] - 1)
            sy, sx = eh / g.feature_size[0], ew / g.feature_size[1]
            o.cell = (i * sy, j * sx, (i + 1) * sy, (j + 1) * sx, "#ffd43b")
            cy, cx = g.cell_centre(i, j)
            half = g.receptive_field / 2 * sy / g.stride
            py, px = (i + 0.5) * sy, (j + 0.5) * sx
            o.boxes = [Box((px - half, py - half, px + half, py + half), "#4dabf7", "receptive field", dashed=True)]
            info += f"<br><br>cell ({i}, {j}): centre at input ({cx:.0f}, {cy:.0f}) px"
        self.picture.set_content(self.state.image, o)
        self.info_label.setText(info)

    def live_data(self) -> np.ndarray:
        g = self.grid
        extra = np.array([g.tokens, g.stride, g.receptive_field], np.float32) if g else np.zeros(0, np.float32)
        return np.concatenate([super().live_data(), extra])

    def experiment(self):
        def on_result(t: core.TokenCounts) -> None:
            self.result_label.setText(
                f"Input {t.full_input[1]}×{t.full_input[0]} px → {t.full_tokens} tokens; at half size "
                f"{t.small_input[1]}×{t.small_input[0]} px → <b>{t.small_tokens} tokens</b>. The encoder's "
                f"self-attention compares every token with every other: {t.full_tokens}² = {t.full_tokens ** 2} "
                f"pairs against {t.small_tokens}² = {t.small_tokens ** 2}.")
        names = self.state.class_names
        return (lambda ctx, m, img: core.token_counts(m, img, names), (self.state.image,), on_result)


# --- 2. Positional encoding --------------------------------------------------------------------
class PositionPage(_PicturePage):
    title = "2 · Positional encoding: where each token is"
    text = ("Attention alone does not know where a token sits. DETR adds a fixed sine code to the keys "
            "and queries (never to the values): half of the channels encode y, half x, at several "
            "frequencies. Nearby cells get similar codes. Click a cell to see how its code resembles the others'.")
    question = "What does cross-attention lose without the positional encoding?"
    experiment_name = "Turn it off at inference"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.channels = HeatmapChart("the sine codes over the feature grid", "channel (frequency high → low)",
                                     "encodes", "code value", colormap="viridis", square=True)
        self.live.insertWidget(0, self.channels, 3)
        self.cell: tuple[int, int] | None = None
        self.similarity: np.ndarray | None = None
        self.picture.clicked.connect(self._pick_cell)

    def draw(self) -> None:
        if not self.has_result():
            return
        r, loaded = self.state.result, self.state.model
        ch = core.sine_channels(loaded.model, r.feature_size)  # [2F, h, w]
        f = ch.shape[0] // 2
        picks = [c for c in range(0, 12, 2) if c < f]  # sine channels, from the highest frequency down
        h, w = r.feature_size
        gap = max(1, min(h, w) // 6)
        codes, _ = mosaic([ch[c] for c in picks] + [ch[f + c] for c in picks], len(picks), gap)
        self.channels.set_values(codes, (-1.0, 1.0), x_ticks=centre_ticks([str(c) for c in picks], w, gap),
                                 y_ticks=centre_ticks(["y", "x"], h, gap))
        i, j = self.cell if self.cell is not None else (h // 2, w // 2)
        i, j = min(i, h - 1), min(j, w - 1)
        self.similarity = core.position_similarity(ch, i, j)
        eh, ew = r.grid_extent()
        o = Overlay(heat=heat_rgb(self.similarity, "inferno"), heat_extent=(eh, ew), heat_opacity=0.65)
        sy, sx = eh / h, ew / w
        o.cell = (i * sy, j * sx, (i + 1) * sy, (j + 1) * sx, "#4dabf7")
        self.picture.set_content(self.state.image, o)
        self.info_label.setText(f"{2 * f} channels per cell ({f} for y, {f} for x); frequencies "
                                f"from 1 to 1/10000<br>cell ({i}, {j}): similarity {self.similarity.min():.2f} "
                                f"(least) to 1.00 (itself)")

    def live_data(self) -> np.ndarray:
        sim = self.similarity.ravel() if self.similarity is not None else np.zeros(0, np.float32)
        return np.concatenate([super().live_data(), sim])

    def experiment(self):
        names, threshold, result = self.state.class_names, self.state.threshold, self.state.result

        def on_result(e: core.PositionEffect) -> None:
            if self.state.result is None:
                return
            h, w = self.state.result.image_size
            boxes = _kept_boxes(self.state.result, e.queries)
            o = Overlay(boxes=boxes)
            for (ya, xa), (yb, xb), q in zip(e.peaks_on, e.peaks_off, e.queries):
                o.points += [(ya * h, xa * w, query_color(q).name()), (yb * h, xb * w, "#ff4040")]
                o.lines.append((ya * h, xa * w, yb * h, xb * w, "#ff4040"))
            self.picture.set_content(self.state.image, o)
            moved = "further from" if e.peak_distance_off > e.peak_distance_on else "no further from"
            self.result_label.setText(
                f"Kept queries' cross-attention peaks (✚ with the encoding, red ✚ without) lie on average "
                f"{e.peak_distance_on:.2f} → <b>{e.peak_distance_off:.2f}</b> image widths from their boxes' "
                f"centres: {moved} their objects. Peaks inside their box: {e.inside_on:.0%} → {e.inside_off:.0%}. "
                f"Boxes kept: {e.kept_on} → {e.kept_off} (mean IoU with the original box {float(e.box_iou.mean()):.2f}).")
        return (lambda ctx, m, img: core.positional_encoding_experiment(m, img, names, threshold, result),
                (self.state.image,), on_result)


# --- 3. Encoder --------------------------------------------------------------------------------
class EncoderPage(_PicturePage):
    title = "3 · Encoder: every token looks at every other"
    text = ("Each encoder layer lets every cell gather information from all cells, weighted by "
            "attention. Click a point: the small maps show where its token attends, per layer (rows) "
            "and head (columns, mean first). Shift+click on the main image does the same.")
    question = "How far does attention reach, layer by layer?"
    experiment_name = "Measure attention distance"
    experiment_copies_model = False

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.maps_chart = HeatmapChart("where the point's token attends", "head", "encoder layer",
                                       "share of the map's peak", square=True)
        self.live.addWidget(self.maps_chart, 3)
        self.maps: np.ndarray | None = None
        self.picture.clicked.connect(lambda y, x: self.state.set_encoder_point((y, x)))

    def draw(self) -> None:
        if not self.has_result():
            return
        r = self.state.result
        if r.encoder_queries is None:
            self.info_label.setText("This result has no encoder attention (a model without an encoder?).")
            return
        h, w = r.image_size
        point = self.state.encoder_point or (h / 2, w / 2)
        maps = r.encoder_attention_at(*point).numpy()  # [L, heads, h, w]
        self.maps = maps
        layers, heads, gh, gw = maps.shape
        # each map to its own peak: a head that puts all its weight on one token would leave the
        # others black on a common scale, and the question here is where they reach, not how much
        tiles = [m / max(float(m.max()), 1e-12) for layer in maps for m in [layer.mean(0), *layer]]
        gap = max(1, min(gh, gw) // 6)
        values, _ = mosaic(tiles, heads + 1, gap)
        self.maps_chart.set_values(values, (0.0, 1.0),
                                   x_ticks=centre_ticks(["mean", *(str(k + 1) for k in range(heads))], gw, gap),
                                   y_ticks=centre_ticks([str(k + 1) for k in range(layers)], gh, gap))
        eh, ew = r.grid_extent()
        o = Overlay(heat=heat_rgb(maps[-1].mean(0)), heat_extent=(eh, ew), points=[(point[0], point[1], "#00e5ff")])
        self.picture.set_content(self.state.image, o)
        self.info_label.setText(f"{maps.shape[0]} encoder layer(s), {maps.shape[1]} heads; the big map is the last "
                                f"layer's mean over heads, from the point at ({point[1]:.0f}, {point[0]:.0f}) px.")

    def live_data(self) -> np.ndarray:
        return self.maps.ravel() if self.maps is not None else np.zeros(0)

    def experiment(self):
        result = self.state.result

        def on_result(d: np.ndarray) -> None:
            rows = "".join(f"<br>layer {i + 1}: mean {row.mean():.1f} px (heads " +
                           ", ".join(f"{v:.0f}" for v in row) + ")" for i, row in enumerate(d))
            trend = ""
            if len(d) > 1:
                trend = " Later layers reach further." if d[-1].mean() > d[0].mean() else \
                    " Here the later layers do not reach further than the first."
            self.result_label.setText(f"Mean attention distance (input pixels, between cell centres):{rows}.{trend} "
                                      f"The image is {result.input_size[1]} px wide.")
        if result is None or result.encoder_queries is None:
            self.result_label.setText("This result has no encoder attention to measure.")
            return None
        return (lambda ctx, m: core.attention_distance(result), (), on_result)


# --- 4. Object queries and the decoder --------------------------------------------------------
class QueriesPage(_PicturePage):
    title = "4 · Object queries and the decoder"
    text = ("The decoder starts from N learned slots, the object queries, the same for every image. "
            "Each slot reads the image through cross-attention and talks to the other slots through "
            "self-attention, so two slots can agree that one of them takes an object. Slots with no "
            "object left to take answer \"no object\".")
    question = "What breaks without decoder self-attention? (dropped at inference on this image)"
    experiment_name = "Drop decoder self-attention"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        column = QVBoxLayout()
        self.matrix = HeatmapChart("decoder self-attention", "attends to slot", "slot",
                                   "attention weight", square=True)
        self.no_object = BarChart("no-object probability per slot", "probability", "slot")
        column.addWidget(self.matrix, 1)
        column.addWidget(self.no_object, 1)
        self.live.addLayout(column, 3)  # two charts one above the other: as wide as the picture

    def draw(self) -> None:
        if not self.has_result():
            return
        r, loaded = self.state.result, self.state.model
        o = Overlay(boxes=_kept_boxes(r, self.state.kept_queries()))
        model = loaded.model
        anchors = ""
        if hasattr(model, "refpoint_embed"):
            n = model.config.num_queries
            boxes = model.refpoint_embed.weight[:n].detach().float().sigmoid()  # [Q, 4] cxcywh
            xyxy = normalized_cxcywh_to_pixel_xyxy(boxes, *r.image_size)
            o.boxes = [Box(tuple(float(v) for v in b), "#9aa0a6", "", dashed=True, width=1) for b in xyxy] + o.boxes
            anchors = " Grey dashed: the learned anchor box of every slot (this model's queries are anchor boxes)."
        self.picture.set_content(self.state.image, o)
        if r.decoder_self_attention is not None:
            m = r.decoder_self_attention[-1].mean(0).numpy()  # mean over heads
            self.matrix.set_values(m, (0.0, float(m.max())), x_ticks=index_ticks(len(m)), y_ticks=index_ticks(len(m)))
        else:
            self.matrix.set_values(np.full((1, 1), np.nan), x_ticks=[], y_ticks=[])
        p = r.probs[:, -1].numpy()
        kept = set(self.state.kept_queries())
        self.no_object.set_bars(p, [str(q) for q in range(len(p))],
                                colors=[query_color(q) if q in kept else "#5f6368" for q in range(len(p))],
                                y_range=(0, 1))
        self.info_label.setText(f"{r.num_queries} slots, {len(kept)} kept at threshold {self.state.threshold:.2f}; "
                                f"the other {r.num_queries - len(kept)} say \"no object\" (mean probability "
                                f"{float(np.delete(p, list(kept)).mean()) if len(kept) < len(p) else float('nan'):.2f})."
                                + anchors)

    def live_data(self) -> np.ndarray:
        return np.concatenate([super().live_data(), self.no_object.values.astype(np.float32)])

    def experiment(self):
        names, threshold, result = self.state.class_names, self.state.threshold, self.state.result

        def on_result(e: core.DuplicateEffect) -> None:
            if self.state.result is not None:
                kept = e.result_without.kept(threshold)
                self.picture.set_content(self.state.image, Overlay(boxes=_kept_boxes(e.result_without, kept)))
            words = {"raised": "raised the duplicate count", "unchanged": "left the duplicate count unchanged",
                     "lowered": "lowered the duplicate count"}[e.verdict]
            self.result_label.setText(
                f"Without decoder self-attention: duplicate pairs (same class, IoU > {e.iou:.1f}) "
                f"{e.pairs_with} → <b>{e.pairs_without}</b>; kept boxes {e.kept_with} → {e.kept_without}. "
                f"Dropping it <b>{words}</b> on this image (boxes drawn: without self-attention).")
        return (lambda ctx, m, img: core.decoder_self_attention_experiment(m, img, names, threshold, 0.5, result),
                (self.state.image,), on_result)


# --- 5. Prediction heads -----------------------------------------------------------------------
class HeadsPage(_PicturePage):
    title = "5 · Prediction heads: a class and a box per slot"
    text = ("Two small heads read each slot's output: a linear layer gives K + 1 class scores (the last "
            "one is \"no object\"), a 3-layer MLP gives the box as centre, width and height, relative to "
            "the image. The same heads run after every decoder layer, so each layer has its own guess.")
    question = "What does a slot with nothing to find predict?"
    experiment_name = "Show the emptiest slot"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.bars = BarChart("the selected slot's class probabilities", "probability", horizontal=True)
        self.live.addWidget(self.bars, 2)
        self.query_spin = QSpinBox()
        self.query_spin.valueChanged.connect(lambda q: self.state.set_selected_query(q))
        row = self.side_widget.widget().layout()
        row.insertWidget(1, QLabel("query:"))
        row.insertWidget(2, self.query_spin)

    def draw(self) -> None:
        if not self.has_result():
            return
        r = self.state.result
        q = self.state.selected_query if self.state.selected_query is not None else 0
        q = min(q, r.num_queries - 1)
        self.query_spin.blockSignals(True)
        self.query_spin.setRange(0, r.num_queries - 1)
        self.query_spin.setValue(q)
        self.query_spin.blockSignals(False)
        probs = r.probs[q].numpy()
        names = [*r.class_names, "no object"]
        self.bars.set_bars(probs, names, colors=["#4dabf7"] * (len(names) - 1) + ["#9aa0a6"], y_range=(0, 1))
        shades = ["#5f6368", "#8ab4f8", "#c58af9", "#f28b82", "#fdd663", "#81c995"]
        boxes = []
        for layer in range(r.num_layers):
            x0, y0, x1, y1 = (float(v) for v in r.layer_boxes_xyxy[layer, q])
            last = layer == r.num_layers - 1
            boxes.append(Box((x0, y0, x1, y1), query_color(q) if last else shades[layer % len(shades)],
                             f"L{layer + 1}" if last or layer == 0 else "", dashed=not last, width=3 if last else 1.5,
                             label_below=layer == 0))  # the first and last boxes are often close: labels apart
        self.picture.set_content(self.state.image, Overlay(boxes=boxes))
        cx, cy, w, h = (float(v) for v in r.boxes_cxcywh[q])
        best = int(probs[:-1].argmax())
        self.info_label.setText(f"query {q}: {r.class_names[best] if best < len(r.class_names) else best} "
                                f"{probs[best]:.2f}, no object {probs[-1]:.2f}<br>box (cx, cy, w, h) = "
                                f"({cx:.2f}, {cy:.2f}, {w:.2f}, {h:.2f})<br>dashed: the box after each earlier "
                                f"decoder layer; solid: the last layer's.")

    def live_data(self) -> np.ndarray:
        return np.concatenate([super().live_data(), self.bars.values.astype(np.float32)])

    def run_experiment(self) -> bool:  # instant: select the slot most sure there is nothing
        r = self.state.result
        if r is None:
            self.result_label.setText(NO_RESULT)
            return False
        q = int(r.probs[:, -1].argmax())
        self.state.set_selected_query(q)
        self.experiment_result = q
        self.result_label.setText(f"Query {q} is the surest there is nothing: no-object probability "
                                  f"{float(r.probs[q, -1]):.2f}. Its box still exists (every slot predicts one); "
                                  f"the loss ignores it, and so does the threshold.")
        self.refresh()
        self.panel.experimentFinished.emit(self.title, q)
        return True


def _stream(data_source: Any) -> ToyShapes:
    """The model's training stream, or the default toy stream (an endless stream has no truth value)."""
    if data_source.training_stream is not None:
        return data_source.training_stream
    return ToyShapes(data_source.data_config, seed=0, split="train")


# --- ground truth for pages 6, 7 and 8 ---------------------------------------------------------
def open_dataset_split(state: Any) -> tuple[str, Any] | None:
    """(split name, split) of the open dataset, its training split or else its first, when the
    open model knows exactly its classes (else its class costs would mean nothing)."""
    opened = state.dataset
    if opened is None or not opened.splits or list(opened.class_names) != list(state.class_names):
        return None
    name = "train" if "train" in opened.splits else next(iter(opened.splits))
    return name, opened.splits[name]


def _from_dataset(smp: Any) -> dict[str, torch.Tensor]:
    h, w = smp.image.shape[:2]
    return target_dict(smp, (h, w), (h, w))


def _current_dataset_image(state: Any) -> tuple[np.ndarray, dict[str, torch.Tensor], str] | None:
    """The current image's objects when it is an image of the open dataset (shown from the
    Dataset view: same file name, same pixels)."""
    opened, image = state.dataset, state.image
    if opened is None or image is None or not state.image_name:
        return None
    for split_name, split in opened.splits.items():
        for index, record in enumerate(split.records):
            if record.path.name != state.image_name:
                continue
            smp = split.sample(index)
            if smp.image.shape == image.shape and np.array_equal(smp.image, image):
                return smp.image, _from_dataset(smp), f"the current image ({record.path.name}, {opened.name} {split_name})"
    return None


def ground_truth(panel: Any) -> tuple[np.ndarray, dict[str, torch.Tensor], str] | None:
    """(image, target, where it comes from): the current image's objects when it is one of the
    explorer's toy samples or an image of the open dataset; else, when the open model was made for
    the open dataset, one of that dataset's images; else sample ``panel.sample_index`` of the
    model's training stream (or the default toy data)."""
    state = panel.state
    toy: ToyShapes | None = panel.toy_stream
    found = re.fullmatch(r"toy sample #(\d+)", state.image_name or "")
    if toy is not None and found and state.image is not None:
        index = int(found.group(1))
        sample = toy.sample(index)
        if sample.image.shape == state.image.shape and np.array_equal(sample.image, state.image):
            return sample.image, toy.target(sample, index), f"the current image (toy sample #{index})"
    split = open_dataset_split(state)
    if split is not None:
        current = _current_dataset_image(state)
        if current is not None:
            return current
        name, data = split
        index = panel.sample_index % len(data)
        smp = data.sample(index)
        return (smp.image, _from_dataset(smp), f"{data.records[index].path.name}, image #{index} of "
                f"{state.dataset.name} {name} (the current image has no ground truth)")
    stream = _stream(state.data_source)
    index = panel.sample_index
    sample = stream.sample(index)
    return sample.image, stream.target(sample, index), f"training sample #{index} (the current image has no ground truth)"


def _classes_note(panel: Any) -> str:
    if open_dataset_split(panel.state) is not None:  # the open dataset's own images and classes
        return ""
    toy = list(panel.state.data_source.data_config.classes) if panel.state.data_source.data_config else \
        list(ToyShapes().class_names)
    if panel.state.class_names != toy:
        return (" Note: this page needs ground truth, so it uses a toy sample; the open model's classes are not "
                "the toy shapes', so its class costs mean little here.")
    return ""


# --- 6. Hungarian matching ---------------------------------------------------------------------
class MatchingPage(_PicturePage):
    title = "6 · Hungarian matching: one slot per object"
    text = ("Training needs to know which slot should have found which object. The cost of pairing a "
            "slot with an object adds a class part (−probability), an L1 box part and a GIoU part; the "
            "Hungarian algorithm picks the pairing with the least total cost, one slot per object.")
    question = "Drag a ground-truth box (white): which slot takes it now?"
    experiment_name = "Reset the boxes"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        column = QVBoxLayout()
        self.part = QComboBox()
        self.part.addItems([COST_PART_NAMES[p] for p in COST_PARTS])
        self.part.currentIndexChanged.connect(lambda _: self._draw_snapshot())
        self.cost_chart = HeatmapChart("matching cost (white: the assignment)", "object", "slot",
                                       "cost (bright = cheap)", colormap="viridis", reverse=True)
        column.addWidget(self.part)
        column.addWidget(self.cost_chart, 1)
        self.live.addLayout(column, 2)
        self.snapshot: MatchingSnapshot | None = None
        self.original: MatchingSnapshot | None = None
        self.source = ""
        self.picture.boxMoved.connect(self.move_target)

    def draw(self) -> None:
        loaded = self.state.model
        if loaded is None:
            self.info_label.setText("Open a model first.")
            return
        truth = ground_truth(self.panel)
        if truth is None:
            return
        image, target, self.source = truth
        matcher = matcher_for(loaded.model, self.state.data_source.loss_config)
        names = self.state.class_names

        def work(ctx: Any, model: Any) -> MatchingSnapshot:
            return match_image(model, matcher, to_tensor(image), target, -1, None, names)

        def done(snapshot: MatchingSnapshot) -> None:
            self.snapshot = self.original = snapshot
            self._draw_snapshot()
        self.info_label.setText("Matching…")
        self.start_job(work, (), done, copy_model=False)

    def _draw_snapshot(self) -> None:
        s = self.snapshot
        if s is None:
            return
        part = COST_PARTS[self.part.currentIndex()]
        cost = s.cost[part]  # [slots, objects]
        self.cost_chart.set_values(cost, x_ticks=index_ticks(s.num_targets), y_ticks=index_ticks(s.num_queries))
        for q, m in zip(s.query_indices, s.target_indices):
            self.cost_chart.mark(int(q), int(m))
        gt = s.target_boxes_xyxy()
        pred = s.pred_boxes_xyxy()
        boxes = [Box(tuple(float(v) for v in b), "#ffffff", f"object {m} {s.class_name(int(s.target_labels[m]))}",
                     width=2.5, label_below=True) for m, b in enumerate(gt)]
        lines = []
        for q, m in zip(s.query_indices, s.target_indices):
            boxes.append(Box(tuple(float(v) for v in pred[q]), query_color(int(q)), f"q{q}", dashed=True))
            (a0, b0, a1, b1), (c0, d0, c1, d1) = gt[m], pred[q]
            lines.append(((b0 + b1) / 2, (a0 + a1) / 2, (d0 + d1) / 2, (c0 + c1) / 2, query_color(int(q)).name()))
        self.picture.set_content(s.image, Overlay(boxes=boxes, lines=lines))
        self.picture.draggable = set(range(len(gt)))
        pairs = ", ".join(f"object {m} ← q{q}" for q, m in zip(s.query_indices, s.target_indices))
        self.info_label.setText(f"Sample: {self.source}. {s.num_queries} slots, {s.num_targets} objects: {pairs}. "
                                f"Total matched cost {s.matched_cost():.2f}." + _classes_note(self.panel))

    def move_target(self, index: int, dy: float, dx: float) -> None:
        """Ground-truth box ``index`` moved by (dy, dx) image pixels: match again."""
        s = self.snapshot
        if s is None or not 0 <= index < s.num_targets:
            return
        h, w = s.image_size
        boxes = s.target_boxes_cxcywh.copy()
        boxes[index, 0] = np.clip(boxes[index, 0] + dx / w, 0, 1)
        boxes[index, 1] = np.clip(boxes[index, 1] + dy / h, 0, 1)
        before = s.matched_queries()
        self.snapshot = core.rematch(s, boxes)
        after = self.snapshot.matched_queries()
        changed = [f"object {m}: q{before[m]} → q{after[m]}" for m in range(len(after)) if before[m] != after[m]]
        self.experiment_result = self.snapshot
        self.result_label.setText("The assignment changed: " + "; ".join(changed) if changed else
                                  "Same assignment: the slots that had these objects are still the cheapest.")
        self._draw_snapshot()

    def live_data(self) -> np.ndarray:
        s = self.snapshot
        return s.cost["total"].ravel() if s is not None else np.zeros(0)

    def run_experiment(self) -> bool:
        if self.original is not None:
            self.snapshot = self.original
            self.result_label.setText("Boxes back where the sample has them.")
            self._draw_snapshot()
        return True


# --- 7. The set loss ---------------------------------------------------------------------------
LOSS_COLORS = ("#ff6b6b", "#51cf66", "#4dabf7")  # class, L1, GIoU
COMPARE_COLORS = ("#ffd43b", "#748ffc")  # the small box, the large box


class LossPage(LessonPage):
    title = "7 · The set loss: class, L1 and GIoU, at every decoder layer"
    text = ("Once matched, each slot is scored: cross-entropy (or focal loss) on its class — unmatched "
            "slots are pushed towards \"no object\" — and, for matched slots, L1 and GIoU on the box. The "
            "same loss is applied after every decoder layer (auxiliary losses), so early layers learn too.")
    question = "Why add GIoU to L1? The same shift, scored on a small and a large box."
    experiment_name = "Score L1 vs L1 + GIoU"
    experiment_copies_model = False

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.chart = BarChart("loss parts per decoder layer (this sample, unweighted)", "loss")
        self.chart.set_legend(list(zip(("class", "L1", "GIoU"), LOSS_COLORS)))
        self.compare = BarChart("the same 0.04 shift: small box (10%) vs large box (50%)", "loss")
        self.compare.set_legend([("small box", COMPARE_COLORS[0]), ("large box", COMPARE_COLORS[1])])
        self.live.addWidget(self.chart, 1)
        self.live.addWidget(self.compare, 1)
        self.rows: list[core.LayerLoss] = []

    def draw(self) -> None:
        loaded = self.state.model
        if loaded is None:
            return
        truth = ground_truth(self.panel)
        if truth is None:
            return
        image, target, source = truth
        loss_config = self.state.data_source.loss_config

        def done(rows: list[core.LayerLoss]) -> None:
            self.rows = rows
            parts = ("loss_ce", "loss_bbox", "loss_giou")
            self.chart.set_bars([], [f"layer {r.layer}" for r in rows],
                                series=[np.array([r.parts[p] for r in rows]) for p in parts],
                                series_colors=list(LOSS_COLORS))
            last = rows[-1].parts
            self.info_label.setText(f"Sample: {source}. Last layer: class "
                                    f"{last['loss_ce']:.3f}, L1 {last['loss_bbox']:.3f}, GIoU {last['loss_giou']:.3f}."
                                    + _classes_note(self.panel))
        self.info_label.setText("Scoring…")
        self.start_job(lambda ctx, m: core.set_loss_by_layer(m, to_tensor(image), target, loss_config), (), done,
                       copy_model=False)

    def live_data(self) -> np.ndarray:
        return np.array([v for r in self.rows for v in r.parts.values()], np.float32)

    def experiment(self):
        loss_config = self.state.data_source.loss_config

        def on_result(c: core.BoxLossComparison) -> None:
            self.compare.set_bars([], ["L1\nalone", "GIoU\nloss", "L1 + GIoU\n(weighted)"], series=[
                np.array([c.l1_small, c.giou_small, c.combined_small]), np.array([c.l1_large, c.giou_large, c.combined_large])],
                series_colors=list(COMPARE_COLORS))
            self.result_label.setText(
                f"Shift of {c.shift} on a box of side {c.small_side} (yellow) and {c.large_side} (blue): L1 is "
                f"{c.l1_small:.3f} for both — it cannot tell a near miss from a bad miss. IoU is {c.iou_small:.2f} "
                f"vs {c.iou_large:.2f}, so the GIoU loss is <b>{c.giou_small:.2f} vs {c.giou_large:.2f}</b>, and "
                f"L1 + GIoU ({c.weights[0]:g}·L1 + {c.weights[1]:g}·GIoU) {c.combined_small:.2f} vs {c.combined_large:.2f}.")
        return (lambda ctx, m: core.box_loss_comparison(loss_config=loss_config), (), on_result)


# --- 8. Training -------------------------------------------------------------------------------
PROBE_NAME = "lesson_no_object"
MATCHED_COLOR, UNMATCHED_COLOR = "#51cf66", "#9aa0a6"


def model_history(loaded: LoadedModel | None) -> dict[str, list[float]]:
    """The loss curves of the open model's own training ("step", "loss", ...): those of the run
    that made it in this session, else those stored in its file; empty when neither is known."""
    if loaded is None:
        return {}
    if loaded.trained is not None:
        return dict(loaded.trained.history.steps)
    if loaded.checkpoint is not None and loaded.checkpoint.history:
        return History.from_dict(loaded.checkpoint.history).steps
    return {}


def model_name(loaded: LoadedModel | None) -> str:
    if loaded is None:
        return "no model"
    return loaded.path.name if loaded.path is not None else loaded.source


class TrainingPage(LessonPage):
    """The story of one model: while a run trains, that run's (the training panel's live loss and
    the probe's points); otherwise the open model's: the loss curve of its own training, and the
    probe's points only when it is the model the probed run handed back (the probe watched no
    other). Opening another model never mixes its loss curve with a run's probe."""

    title = "8 · Training: watch the no-object probability"
    text = ("Training repeats: run, match, score, step. Most slots are matched to nothing, so the first "
            "thing a model learns is to say \"no object\" everywhere; only later do matched slots name "
            "their objects. Start a run in the Train workspace: this page follows it.")
    question = "Watch: which rises first, \"no object\" for unmatched slots, or the true class for matched ones?"
    experiment_name = "Measure the open model now"

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.loss_plot = Chart("total loss")
        self.watch_plot = Chart("mean probability on 8 training images")
        for chart, y_label in ((self.loss_plot, "loss"), (self.watch_plot, "probability")):
            chart.plot_item.setLabel("bottom", "training step")
            chart.plot_item.setLabel("left", y_label)
        self.watch_plot.plot_item.setYRange(0, 1)
        self.watch_plot.set_legend([("matched: true class", MATCHED_COLOR), ("unmatched: no object", UNMATCHED_COLOR)])
        self.loss_curve = self.loss_plot.plot_item.plot([], [], pen=pg.mkPen("#ffffff", width=2))
        self.matched_curve = self.watch_plot.plot_item.plot([], [], pen=pg.mkPen(MATCHED_COLOR, width=2), symbol="o",
                                                            symbolSize=5, symbolBrush=MATCHED_COLOR)
        self.unmatched_curve = self.watch_plot.plot_item.plot([], [], pen=pg.mkPen(UNMATCHED_COLOR, width=2),
                                                              symbol="s", symbolSize=5, symbolBrush=UNMATCHED_COLOR)
        self.live.addWidget(self.loss_plot, 1)
        self.live.addWidget(self.watch_plot, 1)
        self.points: list[core.NoObjectPoint] = []  # the probe's, of the followed run
        self.session: Any = None  # the training session the probe follows
        # the model that run handed back (once it has) and the model the result label measured:
        # weak references, so a model the user has let go of is freed (the page only compares)
        self._run_model: weakref.ref | None = None
        self._measured_model: weakref.ref | None = None
        self.shown_points: list[core.NoObjectPoint] = []
        self.state.trainingChanged.connect(self.follow)
        self.state.probed.connect(self._on_probed)
        self.state.modelChanged.connect(self._on_model)

    def follow(self, session: Any) -> None:
        """A new training session (before its run starts): watch it with the no-object probe."""
        if session is not None and not session.started_training:
            self.points = []
            self.session, self._run_model = session, None
            session.add_probe(PROBE_NAME, core.NoObjectProbe(8), every_steps=10)
            self.panel.page_changed(self)

    def _on_probed(self, name: str, point: Any) -> None:
        if name == PROBE_NAME and point is not None:
            self.points.append(point)
            self.panel.page_changed(self)

    def _on_model(self, loaded: LoadedModel | None) -> None:
        # the only trained model the window opens is the one its training run hands back when it
        # ends: the followed run's, the model the probe's points describe
        if loaded is not None and loaded.trained is not None and self.session is not None and self._run_model is None:
            self._run_model = weakref.ref(loaded)

    @property
    def run_in_progress(self) -> bool:
        """The followed run trains and has not handed back its model yet."""
        return (self.session is not None and self._run_model is None and self.session is self.state.training
                and self.state.training_running)

    def draw(self) -> None:
        loaded = self.state.model
        live = self.run_in_progress
        history = self.panel.training_history() if live else model_history(loaded)
        steps = history.get("step", [])
        self.loss_curve.setData(steps, history.get("loss", []) if steps else [])
        ours = live or (loaded is not None and self._run_model is not None and loaded is self._run_model())
        pts = [p for p in self.points if p.step is not None] if ours else []
        self.shown_points = pts
        self.matched_curve.setData([p.step for p in pts], [p.matched_true_class for p in pts])
        self.unmatched_curve.setData([p.step for p in pts], [p.unmatched_no_object for p in pts])
        if self._measured_model is not None and self._measured_model() is not loaded:
            self.result_label.setText("")  # a measure of another model
            self._measured_model = None
        name = model_name(loaded)
        if pts:
            last = pts[-1]
            whose = "The run in progress" if live else f"{name}, the model of this session's run"
            self.info_label.setText(f"{whose}: at step {last.step} matched slots give their true class "
                                    f"{last.matched_true_class:.2f}, unmatched slots say no object "
                                    f"{last.unmatched_no_object:.2f}.")
        elif live:
            self.info_label.setText("The run in progress: the probe reports every 10 steps.")
        elif self.session is None:
            self.info_label.setText(f"No training run yet in this session (Train ▸ Start Training): the probe "
                                    f"fills in as it runs. {self._loss_note(name, steps)}")
        else:
            self.info_label.setText(f"No probe for {name}: the probe watched the run of this session, whose "
                                    f"model is not the open one. {self._loss_note(name, steps)}")

    @staticmethod
    def _loss_note(name: str, steps: list[float]) -> str:
        if steps:
            return f"The loss curve is {name}'s own training, {int(steps[-1])} steps."
        return f"{name} has no loss curve stored."

    def live_data(self) -> np.ndarray:
        return np.array([[p.matched_true_class, p.unmatched_no_object] for p in self.shown_points],
                        np.float32).ravel()

    def experiment(self):
        loaded = self.state.model
        ds = self.state.data_source
        matcher = matcher_for(loaded.model, ds.loss_config)
        split = open_dataset_split(self.state)
        if split is not None:  # the model was made for the open dataset: its images, as stored
            name, data = split
            stream, count = data, min(8, len(data))
            where = f"{count} images of {self.state.dataset.name} {name}"
        else:
            stream, count, where = _stream(ds), 8, "8 training images"

        def work(ctx: Any, model: Any) -> core.NoObjectPoint:
            images, targets = stream.batch(list(range(count)))
            return core.no_object_point(model, matcher, images, targets)

        def on_result(p: core.NoObjectPoint) -> None:
            if self.state.model is not loaded:  # another model meanwhile: this measure is not its
                return
            self._measured_model = weakref.ref(loaded)
            self.result_label.setText(f"{model_name(loaded)}, on {where}: matched slots give their true class "
                                      f"<b>{p.matched_true_class:.2f}</b>, unmatched slots say no object "
                                      f"<b>{p.unmatched_no_object:.2f}</b>." + _classes_note(self.panel))
        return (work, (), on_result)


# --- 9. Inference without NMS ------------------------------------------------------------------
class InferencePage(_PicturePage):
    title = "9 · Inference: the kept boxes, no NMS"
    text = ("At inference each slot gives one box and one class; DETR keeps the slots whose class "
            "score passes a threshold, and that is all: no anchors to decode, no non-maximum suppression, "
            "because training with one slot per object taught the slots not to duplicate each other.")
    question = "Would NMS change anything on this trained model?"
    experiment_name = "Apply NMS"
    experiment_copies_model = False

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.thumbs = HeatmapChart("cross-attention of the kept slots (last decoder layer, mean over heads)",
                                   "feature-grid x", "feature-grid y", "attention weight", square=True)
        self.live.addWidget(self.thumbs, 2)

    def draw(self) -> None:
        if not self.has_result():
            return
        r = self.state.result
        kept = self.state.kept_queries()
        self.picture.set_content(self.state.image, Overlay(boxes=_kept_boxes(r, kept)))
        if r.cross_attention is not None and kept:
            maps = [r.cross_attention[-1, :, q].mean(0).numpy() for q in kept[:12]]
            h, w = maps[0].shape
            gap = max(1, min(h, w) // 5)
            values, corners = mosaic(maps, min(4, len(maps)), gap)
            self.thumbs.set_values(values, (0.0, float(max(m.max() for m in maps))), x_ticks=[], y_ticks=[])
            for q, (row, column) in zip(kept, corners):
                self.thumbs.label_tile(row, column, f"q{q}", query_color(q).name())
        else:
            self.thumbs.set_values(np.full((1, 1), np.nan), x_ticks=[], y_ticks=[])
        self.info_label.setText(f"{len(kept)} of {r.num_queries} slots kept at threshold {self.state.threshold:.2f}.")

    def experiment(self):
        result, threshold = self.state.result, self.state.threshold
        if result is None:
            self.result_label.setText(NO_RESULT)
            return None

        def on_result(e: core.NmsEffect) -> None:
            if self.state.result is result:
                boxes = _kept_boxes(result, e.after_nms) + _kept_boxes(result, e.removed, dashed=True, color="#ff4040")
                self.picture.set_content(self.state.image, Overlay(boxes=boxes))
            if e.removed:
                self.result_label.setText(f"NMS (IoU {e.iou}) removed {len(e.removed)} of {len(e.kept)} boxes "
                                          f"(red dashed): q{', q'.join(map(str, e.removed))}.")
            else:
                self.result_label.setText(f"NMS (IoU {e.iou}) <b>changed nothing</b>: all {len(e.kept)} kept boxes "
                                          "survive. The slots already avoid duplicates.")
        return (lambda ctx, m: core.nms_experiment(result, threshold), (), on_result)


# --- 10. Denoising ------------------------------------------------------------------------------
OFF_COLOR, ON_COLOR = "#9aa0a6", "#51cf66"  # the instability curves: denoising off, on
DN_GROUPS = 2  # the groups the page draws for a model without denoising, and the experiment's run uses


def denoising_boxes(s: DenoisingSnapshot, stage: int) -> Overlay:
    """The ground truth (white), each denoising query's box at ``stage`` (0: fed in) in its group's
    colour (negatives dashed), and a line from the box fed in to it."""
    gt = s.target_boxes_xyxy()
    boxes = [Box(tuple(float(v) for v in b), "#ffffff", f"object {m}", width=2.5, label_below=True)
             for m, b in enumerate(gt)]
    fed, now = s.boxes_xyxy(0), s.boxes_xyxy(stage)
    lines = []
    for p in range(s.num_queries):
        color = group_color(int(s.group[p]))
        boxes.append(Box(tuple(float(v) for v in now[p]), color, "", dashed=not s.positive[p], width=1.5))
        if stage:
            (a0, b0, a1, b1), (c0, d0, c1, d1) = fed[p], now[p]
            lines.append(((b0 + b1) / 2, (a0 + a1) / 2, (d0 + d1) / 2, (c0 + c1) / 2, color.name()))
    return Overlay(boxes=boxes, lines=lines)


class DenoisingPage(_PicturePage):
    title = "10 · Denoising (DN-DETR): noised boxes the decoder learns to repair"
    text = ("Matching can hand an object to another slot from one step to the next. DN-DETR adds, in "
            "training only, noised copies of the true boxes (some labels flipped) as extra queries that the "
            "decoder must repair: a stable target, no matching needed. White: the objects; a colour per group.")
    question = "Does denoising steady the matching? Count, at every step, the slots whose object changes."
    experiment_name = "Train off and on"
    experiment_copies_model = False  # it trains two fresh models

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.chart = Chart("slots whose matched object changed, per step (8 fixed images)")
        self.chart.plot_item.setLabel("bottom", "training step")
        self.chart.plot_item.setLabel("left", "changes")
        self.chart.set_legend([("denoising off", OFF_COLOR), (f"on ({DN_GROUPS} groups)", ON_COLOR)])
        self.off_curve = self.chart.plot_item.plot([], [], pen=pg.mkPen(OFF_COLOR, width=2))
        self.on_curve = self.chart.plot_item.plot([], [], pen=pg.mkPen(ON_COLOR, width=2))
        self.live.addWidget(self.chart, 2)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(10, 1000)
        self.steps_spin.setValue(60)
        self.steps_spin.setToolTip("Training steps of each of the two runs")
        row = self.side_widget.widget().layout()
        row.insertWidget(1, QLabel("steps per run:"))
        row.insertWidget(2, self.steps_spin)
        self.snapshot: DenoisingSnapshot | None = None

    def draw(self) -> None:
        loaded = self.state.model
        if loaded is None:
            self.info_label.setText("Open a model first.")
            return
        truth = ground_truth(self.panel)
        if truth is None:
            return
        image, target, source = truth
        names = self.state.class_names
        reason = no_denoising_reason(loaded.model)
        if reason is not None:  # what a model with denoising would be fed: no model needed
            self.snapshot = s = noised_inputs(to_tensor(image), target, len(names), DN_GROUPS, sample_index=0,
                                              class_names=names)
            self.picture.set_content(s.image, denoising_boxes(s, 0))
            self.info_label.setText(f"The open model has no denoising queries: drawn are the {s.num_queries} noised "
                                    f"boxes {DN_GROUPS} groups would feed (IoU with their objects "
                                    f"{s.summary(0).iou_in:.2f}). Train with Denoising groups > 0 to see them "
                                    "repaired.")
            self.info_label.setToolTip(f"Sample: {source}. {HOW_TO_TURN_ON}")
            return

        def done(s: DenoisingSnapshot) -> None:
            self.snapshot = s
            if not s.available:
                self.info_label.setText(s.reason)
                return
            self.picture.set_content(s.image, denoising_boxes(s, s.num_layers))
            r = s.summary()
            self.info_label.setText(f"{s.num_queries} denoising queries in {s.num_groups} groups: <b>{r.repaired} of "
                                    f"{r.positives}</b> repaired by the last layer (IoU {r.iou_in:.2f} fed in → "
                                    f"{r.iou_out:.2f}). Lines: from the box fed in to the box given back.")
            self.info_label.setToolTip(f"Sample: {source}.")
        self.info_label.setText("Capturing…")
        self.start_job(lambda ctx, m: capture_denoising(m, to_tensor(image), target, 0, None, names), (), done,
                       copy_model=True)  # the capture switches the modules' modes: a copy

    def live_data(self) -> np.ndarray:
        s = self.snapshot
        return np.concatenate([super().live_data(), s.iou.ravel()]) if s is not None else super().live_data()

    def experiment(self):
        model_config, train_config = preset("fast")
        steps = self.steps_spin.value()

        def work(ctx: Any, _model: Any) -> InstabilityComparison:
            return denoising_instability_experiment(model_config, train_config, steps=steps, probe_images=8,
                                                    dn_groups=DN_GROUPS, batch_size=16, progress=ctx.core_progress)

        def on_result(c: InstabilityComparison) -> None:
            self.off_curve.setData(c.off.steps, c.off.changes)
            self.on_curve.setData(c.on.steps, c.on.changes)
            half = len(c.off.changes) // 2
            late_off, late_on = float(c.off.changes[half:].mean()), float(c.on.changes[half:].mean())
            verdict = ("fewer with denoising" if late_on < late_off else "not fewer with denoising"
                       if late_on > late_off else "the same")
            self.result_label.setText(
                f"Two runs of the fast recipe's model from the same weights on the same batches ({c.batch_size} "
                f"images a step), {steps} steps each; after each step the {c.off.queries} slots of 8 fixed images "
                f"({c.off.objects} objects) are matched again. Changes per step, second half: off "
                f"{late_off:.1f}, on <b>{late_on:.1f}</b> ({verdict}); in all {c.off.total_changes} vs "
                f"{c.on.total_changes}. DN-DETR measured this over epochs: in a few dozen steps the difference "
                f"can be within the noise.")
        return (work, (), on_result)


PAGES = (BackbonePage, PositionPage, EncoderPage, QueriesPage, HeadsPage, MatchingPage, LossPage, TrainingPage,
         InferencePage, DenoisingPage)
