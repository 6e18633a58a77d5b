"""Datasets behind one interface (:class:`DetectionDataset`): the seeded toy-shapes generator,
COCO and VOC folders (:func:`detr_core.data.sources.open_dataset`), and batching helpers."""

from detr_core.data.dataset import DatasetError, DetectionDataset, Sample
from detr_core.data.toy import HELDOUT_SEED, ToySample, ToyShapes, collate

__all__ = ["HELDOUT_SEED", "DatasetError", "DetectionDataset", "Sample", "ToySample", "ToyShapes", "collate"]
