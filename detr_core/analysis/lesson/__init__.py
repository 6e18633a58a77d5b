"""The experiments of the lesson mode: one per block of the DETR pipeline, each a plain function
of the open model (and image) returning a small dataclass of CPU numbers.

Inference-time changes to the model (positional encoding off, decoder self-attention dropped) are
context managers in :mod:`.interventions` that patch module behaviour with forward hooks and
remove them on the way out; the model's code and weights are never changed.

    with positional_encoding_off(model):
        result = run_inference(model, image, class_names)
    effect = positional_encoding_experiment(model, image, class_names, threshold=0.5)
    effect.peak_distance_on, effect.peak_distance_off
"""

from detr_core.analysis.lesson.blocks import (
    BackboneGrid,
    TokenCounts,
    attention_distance,
    backbone_grid,
    position_similarity,
    sine_channels,
    token_counts,
)
from detr_core.analysis.lesson.decoder import (
    DuplicateEffect,
    NmsEffect,
    PositionEffect,
    decoder_self_attention_experiment,
    nms_experiment,
    positional_encoding_experiment,
)
from detr_core.analysis.lesson.interventions import (
    decoder_self_attention_off,
    positional_encoding_off,
)
from detr_core.analysis.lesson.set_loss import (
    BoxLossComparison,
    LayerLoss,
    NoObjectPoint,
    NoObjectProbe,
    box_loss_comparison,
    no_object_point,
    rematch,
    set_loss_by_layer,
)

__all__ = [
    "BackboneGrid",
    "BoxLossComparison",
    "DuplicateEffect",
    "LayerLoss",
    "NmsEffect",
    "NoObjectPoint",
    "NoObjectProbe",
    "PositionEffect",
    "TokenCounts",
    "attention_distance",
    "backbone_grid",
    "box_loss_comparison",
    "decoder_self_attention_experiment",
    "decoder_self_attention_off",
    "nms_experiment",
    "no_object_point",
    "position_similarity",
    "positional_encoding_experiment",
    "positional_encoding_off",
    "rematch",
    "set_loss_by_layer",
    "sine_channels",
    "token_counts",
]
