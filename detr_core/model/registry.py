"""The model families, by name: :func:`build_model` builds the one a config names.

    model = build_model(config)          # config.attention names the family: "dense" or "deformable"

A family is one module (``detr.py``, ``deformable.py``) that composes the shared parts (backbone,
heads, matcher, losses, post-processing) with its own transformer and queries, and offers:

- ``build(config) -> nn.Module``: the detector. Its ``forward(samples, targets=None, capture=False)``
  returns ``pred_logits`` [B, Q, C], ``pred_boxes`` [B, Q, 4] cxcywh in [0, 1] and ``aux_outputs``
  (every earlier decoder layer), and with ``capture`` a ``capture`` entry: a
  :class:`~detr_core.model.capture.ModelCapture` (the protocol every view renders from);
- ``check_config(config)``: raise ValueError on options the family cannot build;
- ``EXPORT_PROBLEM``: why other libraries' DETR formats cannot hold it ("" when they can);
- optionally ``TRACED_SIZE_DYNAMIC = False``: a traced export (ONNX) of it holds one image size
  (its graph computes with sizes as Python numbers); the default is True;
- optionally ``TORCHSCRIPT_PROBLEM``: why torch.onnx's tracing exporter cannot write it (an ONNX
  export then takes the torch.export-based one); the default "" (it can).

Optionally ``TITLE``, ``PAPER`` and ``backbone_name(config)`` name it (:func:`describe`), and
``TRAIN_PROBLEM`` says why it cannot be trained here (:func:`train_problem`; the trainer refuses it).
Adding a family is one new module with these three and one entry in :data:`FAMILIES`. The
config key stays ``attention`` (its first two families differ by their attention) so that every
saved checkpoint still opens. Families are imported when first used: opening a plain DETR never
imports the deformable one.
"""

from __future__ import annotations

import importlib
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from torch import nn


class FamilyConfig(Protocol):
    """A :class:`~detr_core.config.DETRConfig` as the registry sees it (``config.py`` imports this
    module to check a config's family, so this one does not import ``config.py``)."""

    attention: str  # the family's name, a key of FAMILIES

FAMILIES: dict[str, str] = {  # config.attention: the family's module
    "dense": "detr_core.model.detr",
    "deformable": "detr_core.model.deformable",
    # wrapped from transformers (opened, not trained): see detr_core/model/hf_families/
    "rt_detr": "detr_core.model.hf_families.rt_detr",
    "rt_detr_v2": "detr_core.model.hf_families.rt_detr_v2",
    "conditional_detr": "detr_core.model.hf_families.conditional_detr",
    "dab_detr": "detr_core.model.hf_families.dab_detr",
    "d_fine": "detr_core.model.hf_families.d_fine",
    "deimv2": "detr_core.model.hf_families.deimv2",
    "lw_detr": "detr_core.model.hf_families.lw_detr",
    "rf_detr": "detr_core.model.hf_families.rf_detr",
}


def family(name: str) -> ModuleType | SimpleNamespace:
    """The entries of the family called ``name``: its module, or for a family wrapped from
    transformers the module's ``FAMILY``. Raises ValueError on an unknown name."""
    if name not in FAMILIES:
        raise ValueError(f"unknown attention {name!r}; choose one of {tuple(FAMILIES)}")
    module = importlib.import_module(FAMILIES[name])
    return getattr(module, "FAMILY", module)  # a wrapped family's entries: hf_families.base.registry_entries


def check_config(config: FamilyConfig) -> None:
    """Raise ValueError when ``config``'s family cannot build it (or does not exist)."""
    family(config.attention).check_config(config)


def build_model(config: FamilyConfig) -> nn.Module:
    """A new model of ``config``'s family (in training mode, as nn.Modules start)."""
    return family(config.attention).build(config)


def export_problem(config: FamilyConfig) -> str:
    """Why other libraries' DETR formats cannot hold ``config``'s family ("" when they can)."""
    return family(config.attention).EXPORT_PROBLEM


def train_problem(config: FamilyConfig) -> str:
    """Why ``config``'s family cannot be trained here ("" when it can): a family's optional
    ``TRAIN_PROBLEM`` (the families wrapped from transformers are opened, not trained)."""
    return getattr(family(config.attention), "TRAIN_PROBLEM", "")


def describe(config: FamilyConfig) -> dict[str, str]:
    """The family's name and paper (``TITLE``, ``PAPER`` of its module) and its backbone's name."""
    module = family(config.attention)
    name = getattr(module, "backbone_name", None)
    return {
        "family": getattr(module, "TITLE", config.attention),
        "paper": getattr(module, "PAPER", ""),
        "backbone": name(config) if name is not None else str(getattr(config, "backbone", "")),
    }


def attention_kind(config: FamilyConfig) -> str:
    """``"dense"`` or ``"sampling"``: the kind of cross-attention ``config``'s family captures."""
    return family(config.attention).ATTENTION_KIND


def traced_size_dynamic(config: FamilyConfig) -> bool:
    """Whether a traced export of ``config``'s family can take any image size (else one size);
    the export checks it either way."""
    return bool(getattr(family(config.attention), "TRACED_SIZE_DYNAMIC", True))


def torchscript_problem(config: FamilyConfig) -> str:
    """Why torch.onnx's tracing (torchscript) exporter cannot write ``config``'s family ("" when it can)."""
    return str(getattr(family(config.attention), "TORCHSCRIPT_PROBLEM", ""))
