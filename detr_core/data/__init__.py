"""Datasets behind one interface (:class:`DetectionDataset`): the seeded toy-shapes generator
(``toy``, with the fixed held-out split ``heldout_split``), crowded toy images drawn with a given
number of objects (``crowded``), the ground truth of any of them as a pycocotools object
(``ground_truth``), COCO, VOC and YOLO folders (:func:`detr_core.data.sources.open_dataset`), augmentation and
batching, reading and preparing images for the model (``images``), and the COCO class names of the
official checkpoints (``coco_names``)."""

from detr_core.data.dataset import DatasetError, DetectionDataset, Sample
from detr_core.data.toy import HELDOUT_SEED, ToySample, ToyShapes, collate

__all__ = ["HELDOUT_SEED", "DatasetError", "DetectionDataset", "Sample", "ToySample", "ToyShapes", "collate"]
