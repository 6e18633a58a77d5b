"""The explorer's offline help: the quick start, the keyboard shortcuts, the first-launch hint,
and a short "what am I looking at" text per view, reachable from the view itself through a "?"
button (:func:`help_button`) and from Help ▸ What Am I Looking At? (Shift+F1, Qt's What's This)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QToolButton, QWidget

QUICK_START = """\
<h3>Quick start</h3>
<p>The window has five <b>workspaces</b>, one per task: the tabs at the top right, or
Ctrl+1 … Ctrl+5. Each keeps its own panel layout; View ▸ Reset Layout puts the current one back.</p>
<ol>
<li><b>Explore: look at the boxes.</b> The window opens with a small DETR trained on toy shapes
and a toy image. Every coloured box is one <i>object query</i>'s prediction; the table on the
right lists all of them, including the ones that predict "no object" (ticked rows are drawn).</li>
<li><b>Click a query</b> (a box on the image or a row of the table). The heatmap shows where that
query's decoder cross-attention reads the image. Change the layer or head in the Attention
panel: early decoder layers look around, the last one looks at the object's edges.</li>
<li><b>Train: your own model.</b> Press Start (Ctrl+Enter). Loss curves move, and every few
seconds the current weights predict on your image. Stop (Ctrl+.) keeps the trained model;
File ▸ Back to … returns to the one you had. The Runs tab queues experiments.</li>
<li><b>Analyse: see inside.</b> Query specialization, Matching, Layer by layer and Counting
reproduce the paper's figures on the current model; Denoising shows what DN-DETR's denoising
queries are fed and what the decoder makes of them. Each has a <b>?</b> button that says what it
shows.</li>
<li><b>Data: your own dataset.</b> File ▸ Open Dataset (Ctrl+D) opens a COCO folder or
annotation .json, a VOC devkit or a YOLO folder; the browser shows ground truth beside the
predictions. The <b>Doctor</b> (Data ▸ Check Dataset) finds what makes DETR learn nothing:
boxes in another format than declared, class ids shifted by one, more objects than queries.</li>
<li><b>Lesson: teach it.</b> DETR block by block, live on the open model, with an experiment per
page (Ctrl+L). View ▸ Presentation Mode (Ctrl+Shift+P) makes it readable on a projector.</li>
<li><b>Your own images:</b> File ▸ Open Image (Ctrl+O), drag and drop, or paste (Ctrl+V).
The bundled model only knows three toy shapes: on a photo its boxes are guesses, and the
window says so. File ▸ Open Recent always lists the bundled model.</li>
</ol>
<p>Zoom the image with the mouse wheel (around the cursor); double-click it or press Ctrl+0 to
fit it again.</p>
"""

FIRST_LAUNCH_HINT = ("Start here: click a box or a row of the query table to see where that query looks; "
                     "change the layer in the Attention panel. The workspaces at the top right (Train, "
                     "Analyse, Data, Lesson) do one task each. Help ▸ Quick Start (F1) says more.")

# what each view shows, in a few sentences (keys: the dock titles)
VIEW_HELP: dict[str, str] = {
    "Image": (
        "The image with the predicted boxes of the ticked queries (the query table's ticks; the threshold "
        "ticks the queries at or above it; 'Show \"no object\" slots' adds the rest, dimmed). The selected query is drawn thick, and "
        "the heatmap over the image is its decoder cross-attention: where it reads the image features "
        "(the colour bar gives the attention weight of one feature-grid cell). In encoder mode, click a "
        "point to see where that cell's encoder self-attention goes. Wheel: zoom around the cursor; "
        "double-click or Ctrl+0: fit the image."),
    "Queries": (
        "One row per object query: its most likely class, its score and its box in image pixels. DETR "
        "always predicts one box per query; most queries predict 'no object' with a low score. A row is "
        "ticked exactly when its box is drawn: the threshold ticks the rows at or above it; a row you tick or "
        "untick keeps your choice while the threshold moves, until Above threshold or a new image. Select a "
        "row to select the query. The line above the table is what the model knows (in full: its tooltip "
        "and the Model tab)."),
    "Attention": (
        "What the heatmap on the image shows: the selected query's decoder cross-attention, or the "
        "encoder self-attention of a clicked point, in one layer and one head (or the mean over heads). "
        "Opacity and colour map change only the drawing. For Conditional DETR and DAB-DETR, Map picks "
        "the full cross-attention or one of its two factors: each head adds a content logit (the query's "
        "content against the image's features) and a spatial logit (the query's spatial query, a sine "
        "embedding of its reference point, against each cell's position), so the full map is the "
        "content map times the spatial-query map, renormalised."),
    "Attention grid": (
        "The cross-attention of every query drawn (ticked) side by side, in the chosen decoder "
        "layer and head, on one colour scale (the bar on the right, attention weight per feature-grid "
        "cell). Click a cell to select its query."),
    "Training": (
        "Train a new model on toy shapes in a background process. Pick a preset (the same names as "
        "the command line's --preset), change its settings, and press Start. Each lever's tooltip names "
        "the paper it comes from (the preset's, which papers its levers are from); a lever the others rule "
        "out is greyed out and off. The plots show the total "
        "loss and its parts (class, L1, GIoU) against the training step, and the held-out AP (0 to 1). "
        "Stop keeps the trained model in the explorer; save it with File ▸ Save Checkpoint."),
    "Query specialization": (
        "The paper's Figure 7 on this model: for each query slot, every box centre it predicted over the "
        "held-out images (green small, red large and wide, blue large and tall). Slots specialize in "
        "regions and sizes. Click a slot to select that query."),
    "Matching": (
        "The Hungarian matching of one training sample: the cost of assigning each ground-truth object "
        "(rows) to each query (columns), lower is cheaper (the colour bar gives the cost), and the "
        "optimal one-to-one assignment marked. While training it follows each step and counts how many "
        "objects change query between checks."),
    "Denoising": (
        "DN-DETR's denoising queries on one training sample: the ground-truth boxes (white), the noised "
        "copies of them fed to the decoder (a colour per group; positive queries solid, DINO's negatives "
        "dashed), and, with the Layer slider, the box each became after every decoder layer. A positive "
        "query is repaired when its box overlaps its object more (IoU, 0 to 1) than the noised box fed in. "
        "While training it follows each step. A model trained without denoising groups has nothing to show."),
    "Layer by layer": (
        "The selected query's box after every decoder layer (each layer refines it), and the AP "
        "(0 to 1) of every layer's predictions on the held-out images, with and without NMS: the "
        "paper's Figure 4 (later layers need no NMS)."),
    "Counting": (
        "Detected against true number of objects on toy images with more objects than training ever "
        "showed, up to more objects than the model has queries: a DETR cannot find more objects than "
        "its queries (the paper's Figures 5 and 12)."),
    "Runs": (
        "Short training runs of any preset plus changes (name=value, e.g. dn_groups=2), named by them, "
        "with one seed and minutes: the classic ablations (one query, ten queries, no decoder "
        "self-attention, no auxiliary loss) and the study questions (greedy matching, a learned or "
        "input-only positional encoding, no L1 or no GIoU loss, a pretrained backbone) one check each, "
        "beside the baseline. Runs train one at a time; the table gives AP at equal steps and at equal "
        "seconds, the duplicates (kept at score 0.3 and repeating a better box) and what NMS would add to "
        "AP50, the plots overlay loss and held-out AP (0 to 1)."),
    "Dataset": (
        "The open dataset (File ▸ Open Dataset): each image with its object count and what the model gets "
        "right and wrong at IoU 0.5 and the threshold: TP (a kept prediction on a free object of its "
        "class), FP (a kept prediction on nothing, or a duplicate) and missed objects; AP50 is the "
        "image's own. Sort by errors (FP + missed) or AP50, filter by class. The selected image shows "
        "its ground truth (green found, orange missed) beside the predictions (green TP, red FP)."),
    "Doctor": (
        "Why does it predict nothing? Check dataset reads the annotations as declared and lists what "
        "makes DETR learn nothing (wrong box format or units, shifted class ids, more objects than "
        "queries, tiny objects, ...), each with a fix; click an example image to see its boxes and, "
        "with a model loaded, why the model misses any of them (dashed: the matched query's box). "
        "Overfit one batch trains on 4 images: if the loss will not vanish, the pipeline is broken."),
}


def show_view_help(parent: QWidget, title: str) -> QMessageBox:
    """A non-modal box with the view's text."""
    box = QMessageBox(QMessageBox.Icon.Information, f"What am I looking at? — {title}",
                      VIEW_HELP.get(title, ""), QMessageBox.StandardButton.Close, parent)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box


def help_button(title: str, parent: QWidget | None = None) -> QToolButton:
    """A small "?" button that says what the view ``title`` shows."""
    button = QToolButton(parent)
    button.setText("?")
    button.setToolTip(f"What am I looking at? ({title})")
    button.setAutoRaise(True)
    button.setObjectName("help_button")
    button.clicked.connect(lambda: show_view_help(button.window(), title))
    return button
