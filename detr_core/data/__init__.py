"""Datasets: the seeded toy-shapes generator and batching helpers."""

from detr_core.data.toy import HELDOUT_SEED, ToySample, ToyShapes, collate

__all__ = ["HELDOUT_SEED", "ToySample", "ToyShapes", "collate"]
