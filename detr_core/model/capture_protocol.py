"""The capture protocol: what every model family exposes of one forward pass with ``capture=True``
(``out["capture"]``), and the only thing views and analyses read of it.

    cap = model(images, capture=True)["capture"]       # a ModelCapture, whatever the family
    cap.layer_boxes[layer]                             # [B, Q, 4] cxcywh in [0, 1]
    if isinstance(cap.attention, DenseAttention): ...  # dense maps [B, heads, Q, S]
    else: ...                                          # SamplingPoints: locations, weights, levels

Attention comes in one of two kinds: dense maps over one feature grid (:class:`DenseAttention`,
DETR and its variants) or sampling points over multi-scale maps (:class:`SamplingPoints`,
Deformable DETR and its kin). A family's extras (the encoder tokens its queries were selected
from, denoising queries, D-FINE's edge distributions, RT-DETR's encoder self-attention on its top
level) are optional fields of :class:`ModelCapture`; a view that needs one says so when it is
absent. Tensors are batch-first and not detached (the caller detaches).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class AttentionCapture:
    """What one dense attention call exposes when asked: weights and the per-head queries and keys."""

    weights: Tensor | None  # [B, heads, Sq, Sk] (None where only q and k were kept)
    q: Tensor  # [B, heads, Sq, dh]
    k: Tensor  # [B, heads, Sk, dh]


@dataclass
class DenseAttention:
    """Dense attention over the S = h * w tokens of one feature grid, per layer.

    decoder_cross[l].weights: [B, heads, Q, S], rows sum to 1 over the tokens;
    decoder_self[l].weights: [B, heads, Q, Q] (None per layer without decoder self-attention);
    encoder[l]: q and k [B, heads, S, dh] only (an encoder map, [S, S] per head, is computed on demand).

    Conditional DETR and DAB-DETR split each head's cross-attention logit into a content term and a
    spatial term (their per-head queries and keys concatenate a content half and a spatial half):
    ``logit = c_q . c_k + p_q . p_k``, the spatial query p_q a sine embedding of the query's
    reference point scaled by a transformation of its decoder embedding. decoder_cross_split[l]
    keeps layer l's halves (:class:`SplitCrossAttention`, empty for families without the split);
    the maps of each term alone are computed from them on demand: decoder_cross_content[l] and
    decoder_cross_spatial[l], [B, heads, Q, S], each a softmax over the valid tokens (0 on
    padding). ``decoder_cross[l].weights`` is their product renormalised over the tokens: the
    spatial map is the map the content map is multiplied by.
    """

    encoder: list[AttentionCapture] = field(default_factory=list)  # per encoder layer
    decoder_self: list[AttentionCapture | None] = field(default_factory=list)
    decoder_cross: list[AttentionCapture] = field(default_factory=list)
    decoder_cross_split: list[SplitCrossAttention] = field(default_factory=list)  # per decoder layer
    memory_allowed: Tensor | None = None  # [B, 1, 1, S] or None when nothing is padded
    feature_mask: Tensor | None = None  # [B, h, w] True on padding: the grid the maps live on

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the feature grid."""
        assert self.feature_mask is not None
        return int(self.feature_mask.shape[-2]), int(self.feature_mask.shape[-1])

    @property
    def decoder_cross_content(self) -> list[Tensor]:
        """Per decoder layer [B, heads, Q, S]: the content term's map alone (computed now)."""
        return [split.maps()[0] for split in self.decoder_cross_split]

    @property
    def decoder_cross_spatial(self) -> list[Tensor]:
        """Per decoder layer [B, heads, Q, S]: the spatial query's map alone (computed now)."""
        return [split.maps()[1] for split in self.decoder_cross_split]


@dataclass
class SplitCrossAttention:
    """One decoder layer's cross-attention queries and keys, each head's a content half followed by
    a spatial half (Conditional DETR, DAB-DETR): kept instead of the two maps they give, which are
    Q x S per head each and only wanted when a user asks for them."""

    q: Tensor  # [B, heads, Q, 2 * dh] content half first, as transformers concatenates them
    k: Tensor  # [B, heads, S, 2 * dh]
    scaling: float  # the attention's logit scale
    valid: Tensor  # [B, h, w] True on image cells

    def maps(self, queries: Tensor | slice = slice(None)) -> tuple[Tensor, Tensor]:
        """The content-only and spatial-only maps [B, heads, Q', S] of ``queries`` (all by default)."""
        return content_and_spatial_maps(self.q[:, :, queries], self.k, self.scaling, self.valid)


def content_and_spatial_maps(q: Tensor, k: Tensor, scaling: float, valid: Tensor) -> tuple[Tensor, Tensor]:
    """The content-only and spatial-only maps of a cross-attention whose per-head queries and keys
    are a content half and a spatial half concatenated (Conditional DETR, DAB-DETR): its logit is
    ``scaling * (q_c . k_c + q_p . k_p)``, so the full map is the two maps' product, renormalised.

    q: [B, heads, Q, 2 * dh], k: [B, heads, S, 2 * dh] (content first, as transformers concatenates
    them); valid: [B, h, w] True on image cells. Returns two [B, heads, Q, S], softmax over the
    valid tokens (0 on padding)."""
    dh = q.shape[-1] // 2
    padding = ~valid.flatten(1)[:, None, None, :]  # [B, 1, 1, S]

    def softmax(qs: Tensor, ks: Tensor) -> Tensor:
        logits = (qs.float() @ ks.float().transpose(-1, -2)) * scaling  # [B, heads, Q, S]
        return logits.masked_fill(padding, float("-inf")).softmax(-1).to(q.dtype)

    return softmax(q[..., :dh], k[..., :dh]), softmax(q[..., dh:], k[..., dh:])


@dataclass
class SamplingPoints:
    """Sampling points over multi-scale feature maps, per layer (levels: the maps, finest first).

    encoder_locations[l]: [B, S, heads, levels, P, 2] (x, y) in [0, 1] of the padded input, for all
    S tokens of all levels; encoder_weights[l]: [B, S, heads, levels, P].
    decoder_references[l]: [B, Q, 2 or 4] the reference point (or box, cxcywh) layer l used, before
    scaling by the valid ratios; decoder_locations[l]: [B, Q, heads, levels, P, 2]; decoder_weights[l].
    """

    shapes: list[tuple[int, int]]  # (h_l, w_l) of each level's map
    valid_ratios: Tensor  # [B, levels, 2] (w, h) fraction of each level that is image, not padding
    encoder_locations: list[Tensor] = field(default_factory=list)
    encoder_weights: list[Tensor] = field(default_factory=list)
    decoder_references: list[Tensor] = field(default_factory=list)
    decoder_locations: list[Tensor] = field(default_factory=list)
    decoder_weights: list[Tensor] = field(default_factory=list)
    strides: list[int] = field(default_factory=list)  # input pixels per cell of each level
    feature_masks: list[Tensor] = field(default_factory=list)  # per level [B, h_l, w_l] True on padding

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the finest level."""
        return self.shapes[0]


@dataclass
class EncoderSelfAttention:
    """RT-DETR's intra-scale encoder self-attention (AIFI): plain transformer encoder layers over
    the S = h * w tokens of ONE level only, the top (coarsest) one, before the convolutional fusion
    of the levels (RT-DETR, RT-DETRv2, D-FINE, DEIMv2's hybrid encoder; the native ``hybrid_encoder``).

    weights[l]: [B, heads, S, S] (from token, to token), each row sums to 1 over the level's tokens,
    row-major within the level (token i * w + j is cell (i, j)). ``level`` indexes the attention's
    ``SamplingPoints.shapes`` (and ``strides``, ``feature_masks``); ``shape`` is (h, w) of that level.
    ``feature_mask`` [B, h, w] is True on the level's padding cells (None: none padded). The native
    encoder masks padded keys out (their weight is 0); transformers' RT-DETR family passes no mask
    (it sees padding as black pixels), so there they have weight too.
    """

    weights: list[Tensor]  # per AIFI layer [B, heads, S, S]
    level: int  # index of the level among the multi-scale maps (finest first)
    shape: tuple[int, int]  # (h, w) of that level's grid, S = h * w
    stride: int  # input pixels per cell of that level
    feature_mask: Tensor | None = None  # [B, h, w] True on padding, None when nothing is padded


@dataclass
class DenoisingCapture:
    """The denoising queries of one training forward pass (DN-DETR / DINO), P = groups * group_size.

    Query p copies ground-truth object ``target_index[b, p]`` of image b (-1: a padding slot), with
    its label maybe flipped and its box jittered; ``positive`` is False for DINO's contrastive
    negatives (noised further, trained as "no object").
    """

    input_boxes: Tensor  # [B, P, 4] cxcywh in [0, 1]: the noised boxes fed to the decoder
    input_labels: Tensor  # [B, P] long: the (possibly flipped) labels fed
    target_index: Tensor  # [B, P] long: the ground-truth object copied, -1 on padding
    positive: Tensor  # [B, P] bool: True for a positive (reconstruct) query, False for a negative
    group: Tensor  # [P] long: the denoising group of each query
    layer_logits: Tensor  # [L, B, P, C] after every decoder layer
    layer_boxes: Tensor  # [L, B, P, 4] cxcywh in [0, 1] after every decoder layer


@dataclass
class EdgeDistributions:
    """D-FINE's fine-grained distribution refinement (D-FINE, DEIMv2): each decoder layer predicts,
    for each edge of each box (left, top, right, bottom), a probability over N bins, each bin a
    distance of that edge from the query's initial box; the layer's box edge is the expectation.

    ``bin_positions[b, q, e, n]`` is where bin n puts edge e (x for left and right, y for top and
    bottom, in [0, 1] of each image, as ``layer_boxes``); it is the same for every layer (every
    layer refines the same initial box), so the sum over n of ``probabilities[l, b, q, e, n] *
    bin_positions[b, q, e, n]`` is edge e of ``layer_boxes[l, b, q]`` in xyxy.
    """

    probabilities: Tensor  # [L, B, Q, 4, N] per edge (left, top, right, bottom), sums to 1 over N
    bin_positions: Tensor  # [B, Q, 4, N] in [0, 1] of each image


@dataclass
class ModelCapture:
    """One forward pass, as every family reports it."""

    layer_logits: Tensor  # [L, B, Q, C] every decoder layer's class logits (the family's classifier)
    layer_boxes: Tensor  # [L, B, Q, 4] cxcywh in [0, 1]
    attention: DenseAttention | SamplingPoints
    memory: Tensor  # [B, S, D] the encoder's output tokens
    # Query selection (two-stage Deformable DETR, DINO-style anchors, RT-DETR and kin): the queries
    # start from the encoder's best-scoring tokens. A token's index runs over every level's cells,
    # levels in the order of the attention's shapes (finest first), row-major within a level.
    selected_tokens: Tensor | None = None  # [B, Q] long: the encoder token each query started from
    selection_scores: Tensor | None = None  # [B, Q] in [0, 1]: the score the selection ranked that token by
    selection_boxes: Tensor | None = None  # [B, Q, 4] cxcywh in [0, 1]: the proposal box each query started from
    denoising: DenoisingCapture | None = None  # the denoising queries (training with targets)
    edge_distributions: EdgeDistributions | None = None  # D-FINE's per-edge bin probabilities
    encoder_self: EncoderSelfAttention | None = None  # RT-DETR's AIFI self-attention on the top level

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w) of the (finest) feature grid."""
        return self.attention.grid
