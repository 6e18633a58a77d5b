"""Looking inside a model, never changing it.

- ``predict``: the one way analyses run a model: eval mode without gradients, in batches, with
  progress and cancellation (:mod:`detr_core.cancel`).
- ``capture``: inference on one image with every decoder layer's predictions and the encoder and
  decoder attention; ``heatmaps``: attention maps from it.
- Every analysis takes any :class:`~detr_core.data.dataset.DetectionDataset` (toy shapes are one
  dataset among others): ``evaluate``: COCO AP through pycocotools against the dataset's ground
  truth; ``layerwise``: AP of every decoder layer, with and without NMS; ``counting``: detected
  against true object counts; ``matching``: the Hungarian matching of a sample made visible, and
  its stability over training. ``label_map``: a model's classes in a dataset's labels;
  ``voc_map``: VOC mAP@0.5.
- ``duplicates``: duplicate-detection statistics; ``specialization``: where each query slot puts
  its boxes.
"""
