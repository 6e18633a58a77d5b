"""The model's structure: output shapes, reference-compatible parameters, Qt-free core."""

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from detr_core.config import DETRConfig
from detr_core.model.detr import DETR
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list
from detr_core.model.transformer import (
    MultiheadAttention,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"


def test_core_never_imports_qt():
    banned = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6", "qtpy")
    offenders = []
    for path in (ROOT / "detr_core").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


@pytest.mark.parametrize("query_type,groups,dn,classifier", [
    ("learned", 1, 0, "softmax"),
    ("anchor", 3, 4, "focal"),
])
def test_output_shapes(tiny_config, query_type, groups, dn, classifier):
    from dataclasses import replace

    cfg = replace(tiny_config, query_type=query_type, num_query_groups=groups, dn_groups=dn, classifier=classifier)
    model = DETR(cfg)
    b, q, layers = 3, cfg.num_queries, cfg.num_decoder_layers
    images = torch.randn(b, 3, 64, 80)
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.2, 0.2, 0.3, 0.3]])},
               {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]
    model.train()
    out = model(images, targets)
    c = cfg.num_logits
    assert out["pred_logits"].shape == (b, q * groups, c)
    assert out["pred_boxes"].shape == (b, q * groups, 4)
    assert len(out["aux_outputs"]) == layers - 1
    assert all(a["pred_boxes"].shape == (b, q * groups, 4) for a in out["aux_outputs"])
    assert ((out["pred_boxes"] >= 0) & (out["pred_boxes"] <= 1)).all()
    if dn:
        assert len(out["dn_outputs"]) == layers
        assert out["dn_outputs"][0]["pred_boxes"].shape == (b, dn * 2, 4)  # 2 = most objects in an image
    model.eval()
    out = model(images)
    assert out["pred_logits"].shape == (b, q, c)  # inference: one group, no denoising queries
    assert "dn_outputs" not in out


def test_padded_batch_matches_single_images(tiny_config):
    """Images of different sizes are padded with a mask. The transformer ignores padded tokens
    exactly (next test); the conv backbone sees zeros past the image edge either way, so the
    predictions agree to within float noise, as in the reference implementation."""
    model = DETR(tiny_config).eval()
    a, b = torch.randn(3, 64, 64), torch.randn(3, 48, 80)
    with torch.no_grad():
        batched = model(nested_tensor_from_tensor_list([a, b]))
        alone = model([b])
    assert batched["pred_boxes"].shape == (2, tiny_config.num_queries, 4)
    torch.testing.assert_close(batched["pred_boxes"][1], alone["pred_boxes"][0], atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(batched["pred_logits"][1], alone["pred_logits"][0], atol=1e-2, rtol=1e-2)


def test_transformer_ignores_padded_tokens_exactly(tiny_config):
    from detr_core.model.position_encoding import PositionEmbeddingSine

    model = DETR(tiny_config).eval()
    d = tiny_config.d_model
    src = torch.randn(1, d, 4, 6)
    padded = torch.randn(1, d, 7, 9) * 100  # garbage where the padding is
    padded[:, :, :4, :6] = src
    mask = torch.ones(1, 7, 9, dtype=torch.bool)
    mask[:, :4, :6] = False
    pe = PositionEmbeddingSine(d // 2)
    tgt = torch.zeros(1, tiny_config.num_queries, d)
    qpos = model.query_embed.weight[None]
    with torch.no_grad():
        out_a, mem_a, _ = model.transformer(src, torch.zeros(1, 4, 6, dtype=torch.bool),
                                            pe(torch.zeros(1, 4, 6, dtype=torch.bool)), tgt, query_pos=qpos)
        out_b, mem_b, _ = model.transformer(padded, mask, pe(mask), tgt, query_pos=qpos)
    torch.testing.assert_close(out_a.hs, out_b.hs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mem_a, mem_b.view(1, 7, 9, d)[:, :4, :6].reshape(1, 24, d), atol=1e-5, rtol=1e-5)


def _reference_shapes(name):
    rows = {}
    for line in (REFERENCE / name).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, _ = line.split("\t")
        rows[key] = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
    return rows


@pytest.mark.parametrize("backbone,file", [("resnet50", "detr_resnet50_state_dict_keys.tsv"),
                                           ("resnet101", "detr_resnet101_state_dict_keys.tsv")])
def test_state_dict_matches_official_checkpoint(backbone, file):
    """Every key and shape of the official DETR file, and nothing else."""
    if not (REFERENCE / file).exists():
        pytest.skip("reference key list not available")
    expected = _reference_shapes(file)
    with torch.device("meta"):  # the keys and shapes, without allocating and initialising the weights
        model = DETR(DETRConfig(backbone=backbone, pretrained_backbone=False))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


def _copy_attention(ours: MultiheadAttention, torch_mha: nn.MultiheadAttention) -> None:
    torch_mha.in_proj_weight.data.copy_(ours.in_proj_weight)
    torch_mha.in_proj_bias.data.copy_(ours.in_proj_bias)
    torch_mha.out_proj.weight.data.copy_(ours.out_proj.weight)
    torch_mha.out_proj.bias.data.copy_(ours.out_proj.bias)


@pytest.mark.parametrize("capture", [False, True])
def test_attention_equals_torch_multihead_attention(capture):
    """Our attention (fused or explicit) computes exactly what nn.MultiheadAttention does, which is
    what the reference implementation uses, including key padding."""
    torch.manual_seed(0)
    ours = MultiheadAttention(32, 4).eval()
    ref = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    _copy_attention(ours, ref)
    q, k, v = torch.randn(2, 5, 32), torch.randn(2, 7, 32), torch.randn(2, 7, 32)
    pad = torch.zeros(2, 7, dtype=torch.bool)
    pad[1, 5:] = True
    out, cap = ours(q, k, v, allowed=(~pad)[:, None, None, :], capture=capture)
    expected, weights = ref(q, k, v, key_padding_mask=pad, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    if capture:
        torch.testing.assert_close(cap.weights, weights, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_layers_equal_a_torch_built_reference(pre_norm):
    """Encoder and decoder layers follow the paper: positions added to queries and keys (never
    values) at every layer; post-norm (or pre-norm) residual blocks."""
    torch.manual_seed(1)
    d = 32
    enc = TransformerEncoderLayer(d, 4, 64, 0.0, pre_norm).eval()
    dec = TransformerDecoderLayer(d, 4, 64, 0.0, pre_norm).eval()
    mha = {name: nn.MultiheadAttention(d, 4, batch_first=True).eval() for name in ("enc", "dself", "dcross")}
    _copy_attention(enc.self_attn, mha["enc"])
    _copy_attention(dec.self_attn, mha["dself"])
    _copy_attention(dec.multihead_attn, mha["dcross"])
    src, pos = torch.randn(2, 9, d), torch.randn(2, 9, d)
    tgt, qpos = torch.randn(2, 4, d), torch.randn(1, 4, d)

    def ffn(layer, x):
        return layer.linear2(torch.relu(layer.linear1(x)))

    with torch.no_grad():
        if pre_norm:
            x = enc.norm1(src)
            s = src + mha["enc"](x + pos, x + pos, x)[0]
            want_enc = s + ffn(enc, enc.norm2(s))
        else:
            s = enc.norm1(src + mha["enc"](src + pos, src + pos, src)[0])
            want_enc = enc.norm2(s + ffn(enc, s))
        got_enc, _ = enc(src, pos, None)
        torch.testing.assert_close(got_enc, want_enc, atol=1e-5, rtol=1e-5)

        memory = want_enc
        if pre_norm:
            x = dec.norm1(tgt)
            t = tgt + mha["dself"](x + qpos, x + qpos, x)[0]
            x = dec.norm2(t)
            t = t + mha["dcross"](x + qpos, memory + pos, memory)[0]
            want_dec = t + ffn(dec, dec.norm3(t))
        else:
            t = dec.norm1(tgt + mha["dself"](tgt + qpos, tgt + qpos, tgt)[0])
            t = dec.norm2(t + mha["dcross"](t + qpos, memory + pos, memory)[0])
            want_dec = dec.norm3(t + ffn(dec, t))
        got_dec, _, _ = dec(tgt, qpos, memory, memory + pos, None, None)
        torch.testing.assert_close(got_dec, want_dec, atol=1e-5, rtol=1e-5)


def test_decoder_norm_applies_to_every_layer(tiny_config):
    model = DETR(tiny_config).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x, capture=True)
    # the class head sees LayerNorm-ed features at every layer: recompute layer 0 by hand
    cap = out["capture"].attention
    assert len(cap.decoder_cross) == tiny_config.num_decoder_layers
    for layer_out in out["aux_outputs"]:
        assert torch.isfinite(layer_out["pred_logits"]).all()


def test_no_decoder_self_attention_ablation(tiny_config):
    from dataclasses import replace

    model = DETR(replace(tiny_config, decoder_self_attention=False))
    keys = model.state_dict().keys()
    assert not any("decoder.layers.0.self_attn" in k for k in keys)
    assert any("decoder.layers.0.multihead_attn" in k for k in keys)
    out = model(torch.randn(2, 3, 64, 64))
    assert out["pred_boxes"].shape == (2, tiny_config.num_queries, 4)


def test_frozen_batchnorm_folding_is_exact():
    """ResNet convs fold their frozen BatchNorm; the result equals conv then BN."""
    from detr_core.model.backbone import FoldedConv2d, FrozenBatchNorm2d

    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = FrozenBatchNorm2d(6)
    bn.weight.uniform_(0.5, 2)
    bn.bias.normal_()
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 4, 8, 8)
    expected = bn(conv(x))
    folded = FoldedConv2d(4, 6, 3, padding=1, bias=False)
    folded.weight = conv.weight
    object.__setattr__(folded, "_frozen_bn", bn)
    torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)  # trained: BN on the output
    conv.weight.requires_grad_(False)
    torch.testing.assert_close(folded(x), expected, atol=1e-5, rtol=1e-5)  # frozen: weights scaled


def test_resnet_freezes_stem_and_layer1_like_the_reference():
    model = DETR(DETRConfig(backbone="resnet18", pretrained_backbone=False, d_model=32, nheads=2,
                            num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32, num_queries=4))
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.split(".")[2] in ("layer2", "layer3", "layer4") for n in trainable)
    frozen = {n for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert "0.body.conv1.weight" in frozen and any(n.startswith("0.body.layer1.") for n in frozen)


def _query_select_config(tiny_config, **kw):
    from dataclasses import replace

    return replace(tiny_config, query_type="anchor", dense_aux=True, classifier="focal", query_select=True, **kw)


def test_query_selection_needs_anchor_queries_and_the_dense_head(tiny_config):
    from dataclasses import replace

    for bad in (dict(query_type="learned", dense_aux=True), dict(query_type="anchor", dense_aux=False)):
        with pytest.raises(ValueError, match="query_select needs"):
            replace(tiny_config, query_select=True, **bad)


@pytest.mark.parametrize("dn", [0, 2])
def test_query_selection_starts_each_query_from_a_best_encoder_box(tiny_config, dn):
    """With query selection, query i of every group starts from the i-th best-scoring box of the
    dense head on the encoder output, never from a padded token. The box refinement starts as the
    identity, so a fresh model's first decoder layer predicts exactly its starting boxes. Denoising
    queries (dn > 0) keep their own noised ground-truth boxes beside them."""
    cfg = _query_select_config(tiny_config, num_query_groups=2, dn_groups=dn)
    torch.manual_seed(0)
    model = DETR(cfg).train()
    with torch.no_grad():  # a dense head whose scores differ from token to token
        model.dense_head.class_embed.weight.normal_(0, 1.0)
        model.dense_head.bbox_embed.layers[-1].weight.normal_(0, 0.5)
    a, b = torch.randn(3, 64, 64), torch.randn(3, 48, 32)  # the second image is padded
    samples = nested_tensor_from_tensor_list([a, b])
    targets = [{"labels": torch.tensor([0, 2]), "boxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]])},
               {"labels": torch.tensor([1]), "boxes": torch.tensor([[0.2, 0.2, 0.3, 0.3]])}]
    with torch.no_grad():
        out = model(samples, targets)
    assert ("dn_outputs" in out) == (dn > 0)
    dense = out["dense"]
    q = cfg.num_queries
    score = dense["logits"].amax(-1).masked_fill(~dense["valid"], float("-inf"))  # [B, S]
    best = score.topk(q, dim=1).indices
    expected = dense["boxes"].gather(1, best[..., None].expand(-1, -1, 4))  # [B, Q, 4]
    first_layer = out["aux_outputs"][0]["pred_boxes"]  # [B, 2Q, 4]
    torch.testing.assert_close(first_layer[:, :q], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first_layer[:, q:], expected, atol=1e-5, rtol=1e-5)  # the extra group too
    assert dense["valid"][1].sum() < dense["valid"][1].numel()  # the check covered padding
    chosen_valid = dense["valid"].gather(1, best)
    assert chosen_valid.all()
    # inference: one group, starting from the boxes of the dense head, which runs at inference too
    model.eval()
    with torch.no_grad():
        out_eval = model(samples, capture=True)
        dense_eval = model.dense_head(out_eval["capture"].memory, dense["grid"])
    score = dense_eval["logits"].amax(-1).masked_fill(~dense["valid"], float("-inf"))
    best = score.topk(q, dim=1).indices
    expected = dense_eval["boxes"].gather(1, best[..., None].expand(-1, -1, 4))
    torch.testing.assert_close(out_eval["aux_outputs"][0]["pred_boxes"], expected, atol=1e-5, rtol=1e-5)
    assert "refpoint_embed" not in dict(model.named_modules())


def test_spatial_prior_centres_each_query_cross_attention_on_its_box(tiny_config):
    """SMCA's Gaussian prior: with narrow learned widths, every query's cross-attention peaks on
    the token under its current box centre, in every layer; the fused kernel (float mask) and the
    explicit weights the views capture give the same predictions, padded batch included."""
    from dataclasses import replace

    from detr_core.model.transformer import token_centres

    cfg = replace(tiny_config, query_type="anchor", spatial_prior=True)
    torch.manual_seed(0)
    model = DETR(cfg).eval()
    with torch.no_grad():
        model.transformer.decoder.prior_log_scale.fill_(math.log(0.05))  # very narrow
    samples = nested_tensor_from_tensor_list([torch.randn(3, 64, 64), torch.randn(3, 64, 32)])
    with torch.no_grad():
        captured = model(samples, capture=True)
        fused = model(samples)
    torch.testing.assert_close(captured["pred_boxes"], fused["pred_boxes"], atol=1e-4, rtol=1e-4)
    mask = captured["capture"].attention.feature_mask  # [B, h, w]
    centres = token_centres(mask)  # [B, S, 2]
    refs = [model.refpoint_embed.weight.sigmoid()[None].expand(2, -1, -1)]  # layer 0 starts at the anchors
    refs += [a["pred_boxes"] for a in captured["aux_outputs"]]  # each later layer at the previous box
    for layer, ref in enumerate(refs):
        weights = captured["capture"].attention.decoder_cross[layer].weights  # [B, heads, Q, S]
        peak = weights.mean(1).argmax(-1)  # [B, Q]
        nearest = torch.cdist(ref[..., :2].float(), centres).argmin(-1)  # [B, Q]
        assert torch.equal(peak, nearest), layer
        assert (weights[1][..., mask[1].flatten()] == 0).all()  # never on padding


def test_token_centres_use_each_images_unpadded_grid():
    from detr_core.model.transformer import token_centres

    mask = torch.zeros(2, 2, 4, dtype=torch.bool)
    mask[1, :, 2:] = True  # the second image is half as wide: two valid columns
    c = token_centres(mask)
    assert torch.allclose(c[0, :4, 0], torch.tensor([0.125, 0.375, 0.625, 0.875]))
    assert torch.allclose(c[1, :2, 0], torch.tensor([0.25, 0.75]))
    assert torch.allclose(c[:, [0, 4], 1], torch.tensor([[0.25, 0.75], [0.25, 0.75]]))
