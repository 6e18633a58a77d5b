"""How far an exported file's detections are from the eager model's: the self-check of
:mod:`detr_core.formats.onnx` and :mod:`detr_core.formats.pt2`.

The families that start their queries from the encoder's best tokens (``torch.topk``: RT-DETR,
D-FINE, DEIMv2, LW-DETR, RF-DETR, the deformable family's two-stage recipes) rank tokens whose
scores tie to float rounding as each runtime's arithmetic happens to break the tie; a tiny random
model, whose scores are nearly flat, has such ties in every image. So the ONNX check reads the
file's own selection (its ``TopK`` indices, exposed as extra outputs of an in-memory copy) and,
where it differs from the eager model's only between tokens whose scores are within :data:`TIE`,
runs the eager model with that selection (:class:`TopkForced`): the two are then compared
exactly. Queries are compared as a set (:func:`matched_difference`), each of the file's matched
to one of the model's: a detector's output is a set, and equal-score tokens may come in either
order.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

TIE = 1e-5  # selection scores closer than this tie: two runtimes' float arithmetic may order them either way


class TopkForced(TorchFunctionMode):
    """Within ``with TopkForced(indices):``, the i-th ``torch.topk`` of [B, S] scores along dim 1
    returns the tokens ``indices[i]`` [B, k] (another runtime's selection of the same scores) where
    each of their scores is within :data:`TIE` of the one at its rank in this run's own (a tie
    broken the other way); else this run's own. ``forced`` counts the calls it replaced."""

    def __init__(self, indices: list[Tensor]) -> None:
        super().__init__()
        self.indices = list(indices)
        self.forced = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func not in (torch.topk, Tensor.topk) or not self.indices:
            return out
        scores = args[0]
        dim = int(args[2] if len(args) > 2 else kwargs.get("dim", -1))
        if scores.dim() != 2 or dim not in (1, -1):
            return out
        other = self.indices.pop(0).to(out.indices.device, torch.int64)  # [B, k]
        if other.shape != out.indices.shape or torch.equal(other, out.indices):
            return out
        values = scores.gather(1, other)  # [B, k] this run's scores of the other selection
        if not bool(((values.float() - out.values.float()).abs() <= TIE).all()):
            return out  # not a tie: the comparison shows the difference
        self.forced += 1
        return torch.return_types.topk((values, other))


def pairwise(got: Tensor, eager: Tensor, exact: bool = False) -> Tensor:
    """[B, Q, ...] each -> [B, Q, Q]: the largest |got[b, i] - eager[b, j]| over the trailing dims
    (``exact``: 1 where they differ at all, for labels)."""
    g, e = got[:, :, None], eager[:, None, :]
    d = (g != e).float() if exact else (g.to(e.dtype) - e).abs()
    return d.flatten(3).amax(-1) if d.dim() > 3 else d


def matched_difference(costs: list[Tensor]) -> float:
    """The largest difference over the queries of every image, the file's queries matched one to
    one to the model's; ``costs``: :func:`pairwise` of each output, [B, Q, Q]."""
    from scipy.optimize import linear_sum_assignment  # on use: scipy costs a second at startup

    total = torch.stack(costs).amax(0)  # [B, Q, Q]
    worst = 0.0
    for cost in total:
        if cost.isnan().any():
            return float("nan")
        rows, cols = linear_sum_assignment(cost.double().numpy())
        worst = max(worst, cost[torch.as_tensor(rows), torch.as_tensor(cols)].max().item())
    return worst
