"""Inference on one image with everything the explorer shows: per-query predictions at every
decoder layer, decoder cross-attention, decoder self-attention and encoder self-attention.

    result = run_inference(model, image_rgb, class_names)
    result.cross_attention          # [L, heads, Q, h, w] on the feature grid
    result.cross_attention_of("spatial")  # Conditional / DAB-DETR: the spatial query's map alone
    result.encoder_attention_at(y, x)  # [L_enc, heads, h, w] for a point in image pixels
    result.encoder_self.at(y, x)       # RT-DETR's kin: the same on its top level (EncoderSelfMaps)

Capturing attention does not change any prediction (a test compares with a plain forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from detr_core.analysis.deformable_capture import DeformableSampling, deformable_sampling
from detr_core.analysis.edge_distributions import EdgeProfiles, edge_profiles
from detr_core.analysis.encoder_self_attention import EncoderSelfMaps, encoder_self_maps
from detr_core.analysis.predict import evaluating
from detr_core.analysis.query_selection import QuerySelection, query_selection
from detr_core.box_ops import normalized_cxcywh_to_pixel_xyxy
from detr_core.data.images import prepare
from detr_core.model.capture_protocol import (
    DenseAttention,
    ModelCapture,
    SamplingPoints,
    SplitCrossAttention,
)
from detr_core.model.postprocess import class_probabilities, scores_and_labels
from detr_core.model.transformer import attention_weights

# what a cross-attention map shows: the whole map, or (Conditional DETR, DAB-DETR) the map of its
# content logits alone or of its spatial query's alone; the whole map is their product, renormalised
CROSS_FULL, CROSS_CONTENT, CROSS_SPATIAL = "full", "content", "spatial"
CROSS_PARTS = (CROSS_FULL, CROSS_CONTENT, CROSS_SPATIAL)


@dataclass
class InferenceResult:
    class_names: list[str]
    image_size: tuple[int, int]  # (H, W) of the image as given
    input_size: tuple[int, int]  # (H', W') after resizing for the model
    feature_size: tuple[int, int]  # (h, w) of the feature grid
    stride: int  # input pixels per feature cell
    probs: Tensor  # [Q, K + 1] class probabilities, last = no object
    scores: Tensor  # [Q] best real-class probability
    labels: Tensor  # [Q] best real class
    boxes_cxcywh: Tensor  # [Q, 4] normalized to the image
    boxes_xyxy: Tensor  # [Q, 4] pixels of the image as given
    layer_probs: Tensor  # [L, Q, K + 1] every decoder layer's prediction
    layer_boxes_cxcywh: Tensor  # [L, Q, 4]
    layer_boxes_xyxy: Tensor  # [L, Q, 4]
    cross_attention: Tensor | None  # [L, heads, Q, h, w]; rows sum to 1 over (h, w)
    decoder_self_attention: Tensor | None  # [L, heads, Q, Q] (None without decoder self-attention)
    encoder_queries: Tensor | None  # [L_enc, heads, h*w, d_head] (for encoder attention on demand)
    encoder_keys: Tensor | None  # [L_enc, heads, h*w, d_head]
    seconds: float = 0.0  # wall time of the forward pass
    # a deformable model's sampling points (it has no dense attention maps: the three above are None)
    deformable: DeformableSampling | None = None
    # the encoder tokens the queries started from (two-stage and other query-selecting models)
    query_selection: QuerySelection | None = None
    # D-FINE's and DEIMv2's per-edge bin probabilities at every layer (None for other families)
    edge_distributions: EdgeProfiles | None = None
    # Conditional DETR and DAB-DETR: per decoder layer, the cross-attention's queries and keys as
    # content and spatial halves (batch of one, CPU); the map of the content logits alone and of
    # the spatial query's alone are computed from them when asked for (cross_attention_of); None
    # for other models
    cross_split: list[SplitCrossAttention] | None = None
    # RT-DETR's encoder self-attention (AIFI) on its top level (models with a hybrid encoder)
    encoder_self: EncoderSelfMaps | None = None
    _parts: dict[str, Tensor] = field(init=False, default_factory=dict, repr=False, compare=False)

    @property
    def has_cross_parts(self) -> bool:
        """The cross-attention splits into a content map and a spatial-query map."""
        return bool(self.cross_split)

    def _check_part(self, part: str) -> bool:
        """Whether ``part`` is one the result splits off (raises on an unknown name)."""
        if part not in CROSS_PARTS:
            raise ValueError(f"unknown part of the cross-attention {part!r} (one of {', '.join(CROSS_PARTS)})")
        return part != CROSS_FULL and self.has_cross_parts

    def cross_attention_of(self, part: str = CROSS_FULL) -> Tensor | None:
        """[L, heads, Q, h, w]: the whole cross-attention map, or one of its parts (CROSS_PARTS),
        computed on the first call and kept; the whole map when the model has no such part."""
        if not self._check_part(part):
            return self.cross_attention
        if part not in self._parts:
            assert self.cross_split is not None and self.cross_attention is not None
            maps = [split.maps()[CROSS_PARTS.index(part) - 1][0] for split in self.cross_split]  # [heads, Q, S]
            self._parts[part] = torch.stack(maps).reshape(self.cross_attention.shape)
        return self._parts[part]

    def cross_attention_for(self, query: int, part: str = CROSS_FULL) -> Tensor | None:
        """[L, heads, h, w]: ``query``'s whole cross-attention map or one of its parts; a part is
        computed for this query alone (a few kilobytes), not kept."""
        if not self._check_part(part):
            return None if self.cross_attention is None else self.cross_attention[:, :, query]
        if part in self._parts:
            return self._parts[part][:, :, query]
        assert self.cross_split is not None and self.cross_attention is not None
        index = CROSS_PARTS.index(part) - 1
        maps = [split.maps(slice(query, query + 1))[index][0, :, 0] for split in self.cross_split]  # [heads, S]
        return torch.stack(maps).reshape(self.cross_attention[:, :, query].shape)

    @property
    def cross_attention_content(self) -> Tensor | None:
        """[L, heads, Q, h, w] the content logits' map alone (None without the split)."""
        return self.cross_attention_of(CROSS_CONTENT) if self.has_cross_parts else None

    @property
    def cross_attention_spatial(self) -> Tensor | None:
        """[L, heads, Q, h, w] the spatial query's map alone (None without the split)."""
        return self.cross_attention_of(CROSS_SPATIAL) if self.has_cross_parts else None

    @property
    def num_queries(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_layers(self) -> int:
        return int(self.layer_probs.shape[0])

    @property
    def num_heads(self) -> int:
        return 0 if self.cross_attention is None else int(self.cross_attention.shape[1])

    def is_object(self) -> Tensor:
        """[Q] bool: the query's best guess is a real class rather than "no object"."""
        return self.probs[:, :-1].max(-1).values > self.probs[:, -1]

    def kept(self, threshold: float) -> list[int]:
        """Query indices with score >= threshold, best first."""
        idx = torch.nonzero(self.scores >= threshold).flatten().tolist()
        return sorted(idx, key=lambda i: -float(self.scores[i]))

    def grid_extent(self) -> tuple[float, float]:
        """(height, width) in image pixels covered by the feature grid (it may overhang the image
        by less than one cell): draw a feature-grid map over this rectangle to align it."""
        h, w = self.feature_size
        sy = self.image_size[0] / self.input_size[0]
        sx = self.image_size[1] / self.input_size[1]
        return h * self.stride * sy, w * self.stride * sx

    def cell_at(self, y: float, x: float) -> tuple[int, int]:
        """The feature cell under image pixel (y, x)."""
        eh, ew = self.grid_extent()
        h, w = self.feature_size
        i = min(max(int(y / eh * h), 0), h - 1)
        j = min(max(int(x / ew * w), 0), w - 1)
        return i, j

    def encoder_attention_at(self, y: float, x: float) -> Tensor:
        """Where the encoder token under image pixel (y, x) attends: [L_enc, heads, h, w]."""
        if self.encoder_queries is None or self.encoder_keys is None:
            raise ValueError("this result was computed without attention capture")
        i, j = self.cell_at(y, x)
        h, w = self.feature_size
        p = i * w + j
        q = self.encoder_queries[:, :, p : p + 1]  # [L, heads, 1, dh]
        weights = attention_weights(q, self.encoder_keys, None)  # [L, heads, 1, S]
        return weights[:, :, 0].reshape(weights.shape[0], weights.shape[1], h, w)

    def encoder_attention(self) -> Tensor:
        """All of it: [L_enc, heads, h*w (from), h, w (to)]. Large for big images."""
        if self.encoder_queries is None or self.encoder_keys is None:
            raise ValueError("this result was computed without attention capture")
        h, w = self.feature_size
        weights = attention_weights(self.encoder_queries, self.encoder_keys, None)
        return weights.reshape(*weights.shape[:3], h, w)


@torch.no_grad()
def run_inference(
    model: nn.Module,  # any family's (see detr_core/model/registry.py)
    image_rgb: np.ndarray,  # [H, W, 3] uint8
    class_names: list[str],
    capture: bool = True,
    input_tensor: Tensor | None = None,  # already prepared [3, H', W'] (skips resizing)
) -> InferenceResult:
    import time

    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB image, got shape {tuple(image_rgb.shape)}")
    cfg = model.config
    device = next(model.parameters()).device
    x = input_tensor if input_tensor is not None else prepare(image_rgb, cfg.image_min_size, cfg.image_max_size,
                                                                   cfg.fixed_input_size)
    with evaluating(model):
        t0 = time.perf_counter()
        out = model(x[None].to(device), capture=capture)
        seconds = time.perf_counter() - t0

    layers = out["aux_outputs"] + [{"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}]
    logits = torch.stack([lay["pred_logits"][0] for lay in layers]).float().cpu()  # [L, Q, C]
    boxes = torch.stack([lay["pred_boxes"][0] for lay in layers]).float().cpu()  # [L, Q, 4]
    layer_probs = class_probabilities(logits, cfg.classifier)
    h_img, w_img = image_rgb.shape[:2]
    layer_xyxy = normalized_cxcywh_to_pixel_xyxy(boxes, h_img, w_img)
    scores, labels = scores_and_labels(layer_probs[-1])

    cross = dec_self = enc_q = enc_k = sampling = split = None
    stride = model.stride
    cap: ModelCapture | None = out.get("capture")
    if cap is None:
        fh, fw = -(-int(x.shape[-2]) // stride), -(-int(x.shape[-1]) // stride)
    else:
        fh, fw = cap.grid
    if cap is not None and isinstance(cap.attention, DenseAttention):
        att = cap.attention
        cross = torch.stack([c.weights[0] for c in att.decoder_cross]).float().cpu()  # [L, heads, Q, S]
        cross = cross.reshape(*cross.shape[:3], fh, fw)
        if att.decoder_cross_split:  # the first image's halves: their maps are computed when asked for
            split = [SplitCrossAttention(c.q[:1].float().cpu(), c.k[:1].float().cpu(), c.scaling, c.valid[:1].cpu())
                     for c in att.decoder_cross_split]
        if all(c is not None for c in att.decoder_self):
            dec_self = torch.stack([c.weights[0] for c in att.decoder_self]).float().cpu()
        if att.encoder:
            enc_q = torch.stack([c.q[0] for c in att.encoder]).float().cpu()  # [L, heads, S, dh]
            enc_k = torch.stack([c.k[0] for c in att.encoder]).float().cpu()
    elif cap is not None:  # sampling points
        sampling = deformable_sampling(cap.attention, tuple(x.shape[-2:]), (h_img, w_img))
    selection = None
    if cap is not None and cap.selected_tokens is not None:
        strides = None if isinstance(cap.attention, SamplingPoints) else [stride]
        selection = query_selection(cap, (int(x.shape[-2]), int(x.shape[-1])), (h_img, w_img), strides)
    encoder_self = None
    if cap is not None and cap.encoder_self is not None:
        levels = len(cap.attention.shapes) if isinstance(cap.attention, SamplingPoints) else 1
        encoder_self = encoder_self_maps(cap.encoder_self, levels, (int(x.shape[-2]), int(x.shape[-1])), (h_img, w_img))
    return InferenceResult(
        class_names=list(class_names),
        image_size=(h_img, w_img),
        input_size=(int(x.shape[-2]), int(x.shape[-1])),
        feature_size=(fh, fw),
        stride=stride,
        probs=layer_probs[-1],
        scores=scores,
        labels=labels,
        boxes_cxcywh=boxes[-1],
        boxes_xyxy=layer_xyxy[-1],
        layer_probs=layer_probs,
        layer_boxes_cxcywh=boxes,
        layer_boxes_xyxy=layer_xyxy,
        cross_attention=cross,
        decoder_self_attention=dec_self,
        encoder_queries=enc_q,
        encoder_keys=enc_k,
        seconds=seconds,
        deformable=sampling,
        query_selection=selection,
        edge_distributions=edge_profiles(cap, (h_img, w_img)) if cap is not None else None,
        cross_split=split,
        encoder_self=encoder_self,
    )

