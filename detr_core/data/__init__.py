"""Datasets: the seeded toy-shapes generator and batching helpers."""

from .toy import HELDOUT_SEED, ToySample, ToyShapes, collate

__all__ = ["HELDOUT_SEED", "ToySample", "ToyShapes", "collate"]
