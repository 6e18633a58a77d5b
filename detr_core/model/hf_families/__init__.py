"""The families only ``transformers`` implements, opened by wrapping its modeling classes.

RT-DETR, RT-DETRv2, Conditional DETR and DAB-DETR are opened, not trained, here: each family is a
module in this package that wraps transformers' ``*ForObjectDetection`` with forward hooks (the
issue allows it for families that are only opened) and answers the same registry entries and
capture protocol as the native families (``detr_core/model/detr.py``, ``deformable.py``).

Adding a family (D-FINE, DEIMv2, LW-DETR, RF-DETR ...) is:

1. a module here with a subclass of :class:`~detr_core.model.hf_families.base.WrappedDetector`:
   ``SPEC`` (its :class:`~detr_core.model.hf_families.base.FamilySpec`: model_type, the
   transformers class, title, paper, input convention, attention kind), ``_hooks`` (what to record
   on which of transformers' modules), ``_layers`` (every decoder layer's logits and boxes) and
   ``_capture`` (the :class:`~detr_core.model.capture_protocol.ModelCapture`), ``_sizes`` (the
   DETRConfig fields read off transformers' config); then the registry's entries at the module's
   end, as in ``rt_detr.py``: ``FAMILY = registry_entries(TheDetector)`` (``build``,
   ``check_config``, ``ATTENTION_KIND``, ``EXPORT_PROBLEM``, ``TITLE``, ``PAPER``,
   ``TRAIN_PROBLEM``, ``backbone_name``, all from its ``SPEC``);
2. one line in :data:`FAMILIES` below (transformers' ``model_type`` -> the module) and one in
   ``detr_core/model/registry.py``'s ``FAMILIES`` (the family's name -> the same module).

Nothing in this package imports ``transformers`` at import time: a config of these families can
be read and checked without it, and building or opening one without it raises a
:class:`~detr_core.checkpoint_types.CheckpointError` naming the family and ``uv sync --extra hf``.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

# transformers' model_type (config.json) -> the family's module; the family's registry name is the
# module's last part
FAMILIES: dict[str, str] = {
    "rt_detr": "detr_core.model.hf_families.rt_detr",
    "rt_detr_v2": "detr_core.model.hf_families.rt_detr_v2",
    "conditional_detr": "detr_core.model.hf_families.conditional_detr",
    "dab-detr": "detr_core.model.hf_families.dab_detr",
    "d_fine": "detr_core.model.hf_families.d_fine",
    "deimv2": "detr_core.model.hf_families.deimv2",
    "lw_detr": "detr_core.model.hf_families.lw_detr",
    "rf_detr": "detr_core.model.hf_families.rf_detr",
}


def family_module(model_type: str) -> SimpleNamespace:
    """The registry entries (``FAMILY``: ``build``, ``check_config``...) of the wrapped family whose
    ``config.json`` says ``model_type``. KeyError if none."""
    return importlib.import_module(FAMILIES[model_type]).FAMILY
