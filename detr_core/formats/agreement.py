"""How far an exported file's detections are from the eager model's: the self-check of
:mod:`detr_core.formats.onnx` and :mod:`detr_core.formats.pt2`.

Queries are compared as a set, each of the file's queries matched to one of the model's
(``scipy.optimize.linear_sum_assignment`` on their largest difference): the families that start
their queries from the encoder's best tokens (``torch.topk``: RT-DETR, D-FINE, LW-DETR, the
deformable family's two-stage recipes) order tokens whose scores tie to float rounding as each
runtime's arithmetic happens to break the tie, and a detector's output is a set. Where the tie
changes more than the order (at the selection's edge, the k-th and the (k+1)-th best token's
scores within :data:`TIE`, the runtime may pick the other token; LW-DETR's queries have learned
parts by position), the outputs of the tied queries differ: up to that many of the image's queries that differ are left
out (the model itself does not decide between them), and the export says how many were. :class:`TopkRecorder` reads the eager model's
selection scores to know where that is.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

TIE = 1e-5  # selection scores closer than this tie: two runtimes' float arithmetic may order them either way


class TopkRecorder(TorchFunctionMode):
    """Within ``with TopkRecorder() as rec:``, every ``torch.topk`` call's scores and k (``rec.calls``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Tensor, int, int]] = []  # (scores, k, dim)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in (torch.topk, Tensor.topk):
            scores = args[0]
            k = int(args[1] if len(args) > 1 else kwargs["k"])
            dim = int(args[2] if len(args) > 2 else kwargs.get("dim", -1))
            self.calls.append((scores.detach(), k, dim))
        return out


def tied_selections(calls: list[tuple[Tensor, int, int]], batch: int) -> list[int]:
    """Per image, how many selected tokens a runtime may put elsewhere: those scoring within
    :data:`TIE` of the next or the previous token in the ranking (the next one past the last
    selected: the best left out), summed over the recorded selections of that batch ([B, S]
    scores, top-k along dim 1). The place matters where a query's position has learned parts
    (LW-DETR's reference boxes), the token where it is the edge."""
    tied = [0] * batch
    for scores, k, dim in calls:
        if scores.dim() != 2 or dim not in (1, -1) or scores.shape[0] != batch or scores.shape[1] <= k:
            continue
        ranked = scores.float().sort(dim=1, descending=True).values[:, : k + 1]  # [B, k + 1]
        close = (ranked[:, :-1] - ranked[:, 1:]) <= TIE  # [B, k] each selected token and the next
        near = close.clone()
        near[:, 1:] |= close[:, :-1]  # or the previous
        tied = [t + int(c) for t, c in zip(tied, near.sum(1))]
    return tied


def pairwise(got: Tensor, eager: Tensor, exact: bool = False) -> Tensor:
    """[B, Q, ...] each -> [B, Q, Q]: the largest |got[b, i] - eager[b, j]| over the trailing dims
    (``exact``: 1 where they differ at all, for labels)."""
    g, e = got[:, :, None], eager[:, None, :]
    d = (g != e).float() if exact else (g.to(e.dtype) - e).abs()
    return d.flatten(3).amax(-1) if d.dim() > 3 else d


def matched_difference(costs: list[Tensor], tied: list[int], tolerance: float) -> tuple[float, int]:
    """The largest difference over the queries of every image, the file's queries matched one to
    one to the model's, leaving out queries over ``tolerance`` where the image's selection ties at
    its edge (at most ``tied[b]``, :func:`tied_selections`); and how many were left out (the most
    of one image). ``costs``: :func:`pairwise` of each output, [B, Q, Q]."""
    from scipy.optimize import linear_sum_assignment  # on use: scipy costs a second at startup

    total = torch.stack(costs).amax(0)  # [B, Q, Q]
    worst, left_out = 0.0, 0
    for b, cost in enumerate(total):
        if cost.isnan().any():
            return float("nan"), left_out
        rows, cols = linear_sum_assignment(cost.double().numpy())
        matched = cost[torch.as_tensor(rows), torch.as_tensor(cols)].sort().values  # [Q]
        excused = min(int((matched > tolerance).sum()), tied[b])
        kept = matched[: len(matched) - excused]
        left_out = max(left_out, excused)
        worst = max(worst, kept.max().item() if kept.numel() else 0.0)
    return worst, left_out
