"""A new model family needs one module and one registry entry: a stub family, composed here from
the shared parts (backbone, attention, heads; matcher, losses and post-processing through the
trainer and the analyses), registered in ``FAMILIES`` and then reached through the registry alone.
It answers the capture protocol, and every view-level result and analysis runs on it unchanged.

This test module is the stub family's module: ``build``, ``check_config``, ``ATTENTION_KIND`` and ``EXPORT_PROBLEM``
below are what the registry asks of a family."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from detr_core.config import DETRConfig, ToyDataConfig, TrainConfig
from detr_core.model import registry
from detr_core.model.backbone import build_backbone
from detr_core.model.capture_protocol import AttentionCapture, DenseAttention, ModelCapture
from detr_core.model.nested_tensor import NestedTensor, nested_tensor_from_tensor_list
from detr_core.model.transformer import MLP, MultiheadAttention


class StubDETR(nn.Module):
    """Learned queries that only cross-attend to the backbone's tokens, one attention per layer."""

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.backbone = build_backbone(config)
        self.input_proj = nn.Conv2d(self.backbone.num_channels, d, kernel_size=1)
        self.query_embed = nn.Embedding(config.num_queries, d)
        self.layers = nn.ModuleList(MultiheadAttention(d, config.nheads) for _ in range(config.num_decoder_layers))
        self.class_embed = nn.Linear(d, config.num_logits)
        self.bbox_embed = MLP(d, d, 4, 3)

    @property
    def stride(self) -> int:
        return self.backbone.stride

    def forward(self, samples: NestedTensor | Tensor | list[Tensor], targets=None, capture: bool = False) -> dict:
        if not isinstance(samples, NestedTensor):
            samples = nested_tensor_from_tensor_list(samples)
        features, pos = self.backbone(samples)
        src, mask = features.decompose()  # [B, C, h, w], [B, h, w]
        memory = self.input_proj(src).flatten(2).transpose(1, 2)  # [B, S, D]
        keys = memory + pos.flatten(2).transpose(1, 2)
        allowed = ~mask.flatten(1)[:, None, None, :]  # [B, 1, 1, S]
        tgt = self.query_embed.weight[None].expand(memory.shape[0], -1, -1)  # [B, Q, D]
        hs, cross = [], []
        for layer in self.layers:
            out, cap = layer(tgt, keys, memory, allowed, capture=capture)
            tgt = tgt + out
            hs.append(tgt)
            cross.append(cap)
        h = torch.stack(hs)  # [L, B, Q, D]
        logits, boxes = self.class_embed(h), self.bbox_embed(h).sigmoid()
        result = {
            "pred_logits": logits[-1], "pred_boxes": boxes[-1], "query_groups": 1,
            "aux_outputs": [{"pred_logits": lg, "pred_boxes": bx} for lg, bx in zip(logits[:-1], boxes[:-1])],
        }
        if capture:
            attention = DenseAttention(decoder_self=[None] * len(cross), decoder_cross=cross, feature_mask=mask)
            result["capture"] = ModelCapture(layer_logits=logits, layer_boxes=boxes, attention=attention, memory=memory)
        return result


build = StubDETR
ATTENTION_KIND = "dense"
EXPORT_PROBLEM = "the stub family (a test's)"


def check_config(config: DETRConfig) -> None:
    if config.num_encoder_layers:
        raise ValueError("the stub family has no encoder: num_encoder_layers must be 0")


@pytest.fixture
def stub_config(monkeypatch) -> DETRConfig:
    monkeypatch.setitem(registry.FAMILIES, "stub", __name__)  # the one registry entry
    return DETRConfig(backbone="tiny", tiny_stride=16, tiny_width=8, d_model=32, nheads=2, num_encoder_layers=0,
                      num_decoder_layers=2, num_queries=6, num_classes=3, dropout=0.0, attention="stub",
                      image_min_size=64, image_max_size=64)


def test_the_registry_builds_checks_and_names_a_new_family(stub_config):
    torch.manual_seed(0)
    model = registry.build_model(stub_config)
    assert isinstance(model, StubDETR)
    with pytest.raises(ValueError, match="no encoder"):
        dataclasses.replace(stub_config, num_encoder_layers=1)
    with pytest.raises(ValueError, match="unknown attention 'nothing'"):
        dataclasses.replace(stub_config, attention="nothing")
    from detr_core.export import export_problems

    assert "stub family" in " ".join(export_problems(stub_config, "hf"))


def test_the_capture_protocol_and_the_view_result(stub_config, tmp_path):
    from detr_core.analysis.capture import run_inference
    from detr_core.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = registry.build_model(stub_config).eval()
    images = [torch.randn(3, 64, 64), torch.randn(3, 48, 64)]
    with torch.no_grad():
        plain, out = model(images), model(images, capture=True)
    torch.testing.assert_close(plain["pred_logits"], out["pred_logits"])  # fused and explicit attention
    cap = out["capture"]
    assert isinstance(cap, ModelCapture) and isinstance(cap.attention, DenseAttention)
    assert cap.layer_boxes.shape == (2, 2, 6, 4) and cap.grid == (4, 4)
    assert isinstance(cap.attention.decoder_cross[0], AttentionCapture)
    rows = cap.attention.decoder_cross[-1].weights.sum(-1)  # [B, heads, Q]
    torch.testing.assert_close(rows, torch.ones_like(rows))
    assert cap.attention.decoder_cross[-1].weights[1, ..., -4:].abs().max() == 0  # padding gets no attention

    rgb = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    result = run_inference(model, rgb, ["a", "b", "c"])
    assert result.cross_attention.shape == (2, 2, 6, 4, 4)
    assert result.decoder_self_attention is None and result.encoder_queries is None and result.deformable is None
    # a checkpoint of the new family saves and opens through the registry
    again = load_checkpoint(save_checkpoint(tmp_path / "stub.pt", model, ["a", "b", "c"])).build_model()
    with torch.no_grad():
        assert torch.equal(again(images)["pred_boxes"], plain["pred_boxes"])


def test_every_analysis_and_a_training_step_run_on_the_new_family(stub_config):
    from detr_core.analysis.counting import count_crowded, count_objects
    from detr_core.analysis.evaluate import evaluate_model
    from detr_core.analysis.layerwise import layerwise_ap
    from detr_core.analysis.matching import match_sample, matcher_for
    from detr_core.analysis.specialization import collect_slot_predictions
    from detr_core.data.toy import ToyShapes
    from detr_core.train.trainer import Trainer

    torch.manual_seed(0)
    model = registry.build_model(stub_config).eval()
    data = ToyShapes(ToyDataConfig(image_size=64, max_objects=3), seed=0, length=6)
    assert set(evaluate_model(model, data, 4, batch_size=2)) >= {"AP", "AP50"}
    assert len(layerwise_ap(model, data, 4, batch_size=2)) == 2
    assert match_sample(model, matcher_for(model, None), data, 0) is not None
    assert collect_slot_predictions(model, data, 4, batch_size=2).boxes_cxcywh.shape[:2] == (4, 6)
    assert len(count_objects(model, data, 4).rows) == 4
    counted = count_crowded(model, [1, 2], images_per_count=1, data_config=ToyDataConfig(image_size=64))
    assert len(counted.rows) == 2 and counted.num_queries == 6
    # the trainer builds the family through the registry; matcher and losses take its outputs
    trainer = Trainer(stub_config, TrainConfig(batch_size=2, steps=1, seed=0, eval_every=0, eval_images=1,
                                               bf16=False, threads=1))
    assert isinstance(trainer.model, StubDETR)
    losses = trainer.train_step(*trainer.dataset.batch(range(2)))
    assert {"loss_ce", "loss_bbox", "loss_giou"} <= set(losses) and all(np.isfinite(v) for v in losses.values())
