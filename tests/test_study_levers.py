"""The study questions' levers: greedy matching, the learned position encoding, the encoding
added at the input only; and the study experiments built on every preset."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from detr_core.config import DETRConfig, LossConfig
from detr_core.model.losses import SetCriterion
from detr_core.model.matcher import HungarianMatcher, greedy_assignment
from detr_core.model.position_encoding import PositionEmbeddingLearned
from detr_core.model.registry import build_model
from detr_core.model.transformer import Transformer
from detr_core.presets import PRESETS, preset
from detr_core.train.ablations import EXPERIMENTS, experiment_specs

TINY = ["d_model=32", "dim_feedforward=64", "num_encoder_layers=1", "num_decoder_layers=2", "tiny_width=8",
        "batch_size=2", "num_queries=4"]


# --- greedy matching ----------------------------------------------------------------------------
def test_greedy_takes_the_cheapest_pair_first_where_hungarian_minimises_the_total():
    # both objects' cheapest query is query 0 (the argmin collides)
    cost = np.array([[0.0, 0.1],
                     [0.2, 10.0]])
    g_rows, g_cols = greedy_assignment(cost)
    h_rows, h_cols = linear_sum_assignment(cost)
    assert (g_rows.tolist(), g_cols.tolist()) == ([0, 1], [0, 1])  # object 1 left with query 1
    assert (h_rows.tolist(), h_cols.tolist()) == ([0, 1], [1, 0])
    assert cost[g_rows, g_cols].sum() == pytest.approx(10.0) and cost[h_rows, h_cols].sum() == pytest.approx(0.3)


def test_greedy_is_one_to_one_and_never_cheaper_than_hungarian():
    rng = np.random.default_rng(0)
    worse = 0
    for q, m in [(5, 3), (3, 5), (4, 4), (6, 1), (1, 6)]:
        for _ in range(20):
            cost = rng.random((q, m))
            rows, cols = greedy_assignment(cost)
            assert len(rows) == min(q, m) and len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
            assert list(rows) == sorted(rows)
            best = cost[linear_sum_assignment(cost)].sum()
            assert cost[rows, cols].sum() >= best - 1e-9
            worse += cost[rows, cols].sum() > best + 1e-9
    assert worse > 0  # greedy is not secretly optimal
    assert greedy_assignment(np.zeros((3, 0)))[0].shape == (0,)


def test_the_criterion_trains_the_greedy_assignment():
    """The loss of a greedy-matched criterion follows the greedy pairs: with the constructed
    collision, its L1 box loss is that of the worse assignment."""
    # query 0 sits between the objects, a little nearer object 0; query 1 is beside object 0, far from 1
    boxes = torch.tensor([[[0.49, 0.5, 0.2, 0.2], [0.30, 0.5, 0.2, 0.2]]])
    logits = torch.zeros(1, 2, 4)
    targets = [{"labels": torch.tensor([0, 1]),
                "boxes": torch.tensor([[0.40, 0.5, 0.2, 0.2], [0.60, 0.5, 0.2, 0.2]])}]
    cfg = DETRConfig(backbone="tiny", d_model=32, nheads=4, num_queries=2, num_classes=3, aux_loss=False)
    out = {"pred_logits": logits, "pred_boxes": boxes, "aux_outputs": []}
    hungarian = SetCriterion(cfg, LossConfig(cost_class=0, cost_giou=0))
    greedy = SetCriterion(cfg, LossConfig(cost_class=0, cost_giou=0, matcher="greedy"))
    assert greedy.matcher.assignment == "greedy"
    (h_src, h_tgt), = hungarian.matcher(out, targets)
    (g_src, g_tgt), = greedy.matcher(out, targets)
    assert dict(zip(h_src.tolist(), h_tgt.tolist())) == {0: 1, 1: 0}
    assert dict(zip(g_src.tolist(), g_tgt.tolist())) == {0: 0, 1: 1}
    l1_h, l1_g = hungarian(out, targets)["loss_bbox"].item(), greedy(out, targets)["loss_bbox"].item()
    assert l1_h == pytest.approx((0.11 + 0.10) / 2, abs=1e-5)  # L1 summed over cx, cy, w, h; per object
    assert l1_g == pytest.approx((0.09 + 0.30) / 2, abs=1e-5)
    with pytest.raises(ValueError, match="unknown matcher"):
        LossConfig(matcher="argmax")
    with pytest.raises(ValueError, match="unknown assignment"):
        HungarianMatcher(assignment="argmax")


# --- the learned position encoding ----------------------------------------------------------------
def test_learned_encoding_is_per_column_then_per_row_and_refuses_large_grids():
    pe = PositionEmbeddingLearned(8, size=10)
    pos = pe(torch.zeros(2, 3, 5, dtype=torch.bool))  # [2, 16, 3, 5]
    assert pos.shape == (2, 16, 3, 5)
    x_part, y_part = pos[0, :8], pos[0, 8:]
    assert torch.equal(x_part[:, 0], pe.col_embed.weight[:5].T) and torch.equal(x_part[:, 2], x_part[:, 0])
    assert torch.equal(y_part[:, :, 0], pe.row_embed.weight[:3].T) and torch.equal(y_part[:, :, 4], y_part[:, :, 0])
    with pytest.raises(ValueError, match="up to 10x10"):
        pe(torch.zeros(1, 11, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="position_embedding"):
        DETRConfig(position_embedding="fourier")


def test_a_learned_encoding_is_a_trained_part_of_the_model():
    cfg = DETRConfig(backbone="tiny", tiny_stride=16, tiny_width=8, d_model=32, nheads=4, num_encoder_layers=1,
                     num_decoder_layers=1, dim_feedforward=64, num_queries=4, num_classes=3,
                     position_embedding="learned")
    torch.manual_seed(0)
    model = build_model(cfg)
    assert "backbone.1.row_embed.weight" in model.state_dict()
    out = model(torch.rand(1, 3, 64, 64))
    (out["pred_boxes"].sum() + out["pred_logits"].sum()).backward()
    grad = model.backbone[1].col_embed.weight.grad  # [50, 16]: the 4 columns of a 4x4 grid were used
    assert grad[:4].abs().sum() > 0 and grad[4:].abs().sum() == 0


# --- the encoding at the input only --------------------------------------------------------------
@pytest.mark.parametrize("pre_norm", [False, True])
def test_position_at_input_adds_the_encoding_once(pre_norm):
    """position_added="input" is the every-layer transformer given (features + encoding) and no
    encoding: the layers see the position only through the tokens they receive."""
    torch.manual_seed(0)
    every = Transformer(d_model=32, nheads=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                        dropout=0.0, pre_norm=pre_norm).eval()
    once = Transformer(d_model=32, nheads=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                       dropout=0.0, pre_norm=pre_norm, position_at_input=True).eval()
    once.load_state_dict(every.state_dict())
    src, pos = torch.randn(2, 32, 3, 4), torch.randn(2, 32, 3, 4)
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    query_pos = torch.randn(1, 5, 32)
    tgt = torch.zeros(1, 5, 32)
    with torch.no_grad():
        got, memory, _ = once(src, mask, pos, tgt, query_pos=query_pos)
        same, same_memory, _ = every(src + pos, mask, torch.zeros_like(pos), tgt, query_pos=query_pos)
        usual, _, _ = every(src, mask, pos, tgt, query_pos=query_pos)
    assert torch.allclose(got.hs, same.hs, atol=1e-6) and torch.allclose(memory, same_memory, atol=1e-6)
    assert not torch.allclose(got.hs, usual.hs, atol=1e-3)
    with pytest.raises(ValueError, match="position_added"):
        DETRConfig(position_added="first_layer")


# --- the study experiments on every preset ---------------------------------------------------------
def test_study_experiments_change_what_they_say_and_deformable_refuses_position_levers():
    keys = [k for k, e in EXPERIMENTS.items() if e.group == "study" and not e.unavailable()]
    specs = {s.experiment: s for s in experiment_specs(keys, base="fast", seconds=None, steps=2, common=TINY)}
    assert specs["greedy-matching"].name == "fast + loss.matcher=greedy"
    model_cfgs = {k: s.configs() for k, s in specs.items()}
    assert model_cfgs["greedy-matching"][1].loss.matcher == "greedy"
    assert model_cfgs["learned-position"][0].position_embedding == "learned"
    assert model_cfgs["position-at-input"][0].position_added == "input"
    assert model_cfgs["no-l1-loss"][1].loss.weight_bbox == 0 and model_cfgs["no-giou-loss"][1].loss.weight_giou == 0
    for name in PRESETS:
        deformable = preset(name)[0].attention == "deformable"  # deformable, dino, rt_detr
        for spec in experiment_specs(["learned-position", "position-at-input"], base=name, seconds=None, steps=2):
            if deformable:
                with pytest.raises(ValueError, match="deformable attention needs position_embedding"):
                    spec.configs()
            else:
                assert spec.configs()[0].attention == "dense"


def test_each_study_lever_trains_a_step_on_the_fast_preset():
    from detr_core.data.toy import ToyShapes

    keys = ["greedy-matching", "learned-position", "position-at-input", "no-l1-loss", "no-giou-loss"]
    data = ToyShapes(experiment_specs(["baseline"], seconds=None, steps=1)[0].configs()[1].data, seed=0)
    images, targets = zip(*(data[i] for i in range(2)))
    for spec in experiment_specs(keys, base="fast", seconds=None, steps=1, common=TINY):
        model_cfg, train_cfg = spec.configs()
        torch.manual_seed(0)
        model = build_model(model_cfg)
        losses = SetCriterion(model_cfg, train_cfg.loss)(model(list(images), list(targets)), list(targets))
        losses["loss"].backward()
        assert torch.isfinite(losses["loss"]), spec.name
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), spec.name


def test_the_pretrained_experiment_needs_cached_weights(tmp_path, monkeypatch):
    experiment = EXPERIMENTS["pretrained-backbone"]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert "never downloads" in experiment.unavailable() and str(tmp_path) in experiment.unavailable()
    with pytest.raises(ValueError, match="pretrained-backbone needs ImageNet weights"):
        experiment_specs(["pretrained-backbone"])
    import torchvision

    name = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / name).write_bytes(b"")
    assert experiment.unavailable() == ""
    pretrained, scratch = experiment_specs(["pretrained-backbone"], seconds=None, steps=1)
    assert pretrained.configs()[0].pretrained_backbone and not scratch.configs()[0].pretrained_backbone
    assert pretrained.configs()[0].backbone == scratch.configs()[0].backbone == "resnet18"
    assert pretrained.name == "fast + backbone=resnet18, pretrained_backbone=on"


def test_basic_block_resnets_refuse_dilation_in_the_config():
    """torchvision's BasicBlock cannot dilate: said by the config, not by a crash building the model."""
    for kw in (dict(backbone="resnet18"), dict(backbone="resnet34"),
               dict(backbone="resnet", resnet_block="basic", resnet_depths=(1, 1, 1, 1), resnet_widths=(8,) * 5)):
        with pytest.raises(ValueError, match="dilation needs a bottleneck ResNet"):
            DETRConfig(dilation=True, **kw)
    assert DETRConfig(backbone="resnet50", dilation=True).dilation
