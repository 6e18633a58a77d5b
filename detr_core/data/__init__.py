"""Data: the seeded toy-shapes generator and its batching (``toy``), loading and preparing images
for the model (``images``), and the COCO class names of the official checkpoints (``coco_names``)."""

from detr_core.data.toy import HELDOUT_SEED, ToySample, ToyShapes, collate

__all__ = ["HELDOUT_SEED", "ToySample", "ToyShapes", "collate"]
