"""DETR core: the detector, its toy data, training, and the analyses the explorer shows.

Plain PyTorch; never imports Qt (a test enforces it). The sub-packages, by concept:

- :mod:`detr_core.model`: the detector and what defines it (backbone, positional encoding,
  transformer, heads, denoising queries, dense head, Hungarian matcher, set criterion and its
  loss weights, post-processing).
- :mod:`detr_core.data`: the seeded toy-shapes generator, image loading and batching.
- :mod:`detr_core.train`: the training loop (a generator of events), live training in a child
  process, and comparable runs (ablations, their records and store).
- :mod:`detr_core.analysis`: looking inside a model (attention capture, heatmaps, COCO
  evaluation, AP layer by layer, query specialization, counting, matching, duplicates), all run
  through one eval-mode prediction helper (:mod:`detr_core.analysis.predict`).

At the top: :mod:`~detr_core.config` (typed configs), :mod:`~detr_core.presets` (named recipes),
:mod:`~detr_core.checkpoint` (the one checkpoint format), :mod:`~detr_core.box_ops`,
:mod:`~detr_core.device` and :mod:`~detr_core.cancel` (the one cancellation rule: long work
takes ``progress``, calls it before the first batch and after each, and ends when it raises
:class:`~detr_core.cancel.Cancelled`).

Shapes are written at every module boundary in one notation: B images (a batch, or every image
of an analysis), Q queries, L decoder layers (``L_enc`` encoder layers), ``heads`` attention heads
(``dh`` their width), ``h, w`` the feature grid and S = h * w its tokens, H, W image pixels,
D the model width, C class logits (K real classes, + 1 "no object" for softmax), M ground-truth
objects of an image, N detections of an image (fewer than Q after a threshold or NMS), and P
denoising queries (in front of the Q matching queries while training with them).
"""

from detr_core.device import skip_triton_without_cuda

skip_triton_without_cuda()  # before anything imports torchvision (see there why)
