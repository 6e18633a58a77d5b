"""D-FINE's edge distributions, on the image: for each query and decoder layer, each box edge's
probability over its bins and where each bin would put that edge, in pixels of the image as given.

D-FINE and DEIMv2 (fine-grained distribution refinement) do not regress a box: every decoder layer
predicts, for each edge (left, top, right, bottom), a probability over N bins, each bin a distance
of that edge from the query's initial box; the layer's edge is the expectation. Each layer
refines the previous layer's bin logits, so the distributions sharpen layer by layer. Their
capture says how (:class:`~detr_core.model.capture_protocol.EdgeDistributions`); this module puts
one image's on the image.

    edges = result.edge_distributions            # from run_inference; None for a model without them
    positions, probabilities = edges.profile(layer, query)   # [4, N] pixels, [4, N]
    edges.expected_edges(layer)[query]           # [4] xyxy pixels: that layer's box
    edges.peaks(layer)[query]                    # [4] each edge's largest bin probability
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from detr_core.model.capture_protocol import ModelCapture

EDGE_NAMES = ("left", "top", "right", "bottom")


@dataclass
class EdgeProfiles:
    """One image's edge distributions (L decoder layers, Q queries, N bins per edge)."""

    probabilities: Tensor  # [L, Q, 4, N] per edge (left, top, right, bottom), sums to 1 over N
    bin_positions: Tensor  # [Q, 4, N] image pixels: x for left and right, y for top and bottom

    @property
    def num_layers(self) -> int:
        return int(self.probabilities.shape[0])

    @property
    def num_bins(self) -> int:
        return int(self.probabilities.shape[-1])

    def profile(self, layer: int, query: int) -> tuple[Tensor, Tensor]:
        """(positions [4, N] pixels, probabilities [4, N]) of one query's edges at one layer."""
        return self.bin_positions[query], self.probabilities[layer, query]

    def expected_edges(self, layer: int) -> Tensor:
        """[Q, 4] xyxy pixels: each edge's expectation, which is the layer's box."""
        return (self.probabilities[layer] * self.bin_positions).sum(-1)

    def peaks(self, layer: int) -> Tensor:
        """[Q, 4] each edge's largest bin probability at ``layer`` (1: certain of one bin)."""
        return self.probabilities[layer].max(-1).values


def edge_profiles(capture: ModelCapture, image_size: tuple[int, int], index: int = 0) -> EdgeProfiles | None:
    """Image ``index`` of a capture's edge distributions in pixels of the image as given
    (``image_size``: (H, W)); None when the model has none."""
    edges = capture.edge_distributions
    if edges is None:
        return None
    h, w = image_size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)[:, None]  # [4, 1] x, y, x, y
    return EdgeProfiles(
        probabilities=edges.probabilities[:, index].detach().float().cpu(),  # [L, Q, 4, N]
        bin_positions=edges.bin_positions[index].detach().float().cpu() * scale,  # [Q, 4, N]
    )
