"""Looking inside a model, never changing it.

- ``predict``: the one way analyses run a model: eval mode without gradients, in batches, with
  progress and cancellation (:mod:`detr_core.cancel`).
- ``capture``: inference on one image with every decoder layer's predictions and the encoder and
  decoder attention; ``heatmaps``: attention maps from it.
- ``evaluate``: COCO AP on the held-out toy split; ``layerwise``: AP of every decoder layer, with
  and without NMS; ``duplicates``: duplicate-detection statistics.
- ``specialization``: where each query slot puts its boxes; ``counting``: detected against true
  object counts.
- ``matching``: the Hungarian matching of a sample made visible, and its stability over training.
"""
