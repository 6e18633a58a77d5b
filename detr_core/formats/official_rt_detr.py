"""The authors' own release files of RT-DETR and RT-DETRv2 (lyuwenyu/RT-DETR, ``rtdetr_pytorch`` and
``rtdetrv2_pytorch``) and D-FINE (Peterande/D-FINE): a ``torch.save``'d dict holding the state dict as ``{"model": state}``,
``{"ema": {"module": state}}`` (preferred when both are there: it is the one their evaluation
reports) or bare, opened as the wrapped transformers families
(:mod:`detr_core.model.hf_families.rt_detr`, :mod:`~detr_core.model.hf_families.d_fine`), so every
view and ``main.py info/eval/predict`` take them (:mod:`~detr_core.model.hf_families.rt_detr_v2` for v2).

The file is recognised by its keys, never its name: ``backbone.res_layers.*`` (PResNet) or
``backbone.stem.*``/``backbone.stages.*`` (HGNetV2, in D-FINE's layout or in RT-DETRv2's, whose
rtdetrv2_hgnetv2_l/x/h name a block's aggregation convs and pad the stem's 2x2 convs in a
``Sequential``; RT-DETR v1's HGNetv2 models were released for Paddle only), ``encoder.input_proj.*`` and
``decoder.dec_score_head.*``; ``decoder.decoder.lqe_layers.*`` makes it D-FINE, a
``cross_attn.num_points_scale`` buffer without them RT-DETRv2.

**Names.** :data:`RULES` renames the authors' parameters to those of the installed transformers'
``RTDetrForObjectDetection`` / ``DFineForObjectDetection``. The renames are the ones transformers'
conversion scripts make (``models/rt_detr/convert_rt_detr_original_pytorch_checkpoint_to_hf.py``
``models/rt_detr_v2/convert_rt_detr_v2_weights_to_hf.py`` and
``models/d_fine/convert_d_fine_original_pytorch_checkpoint_to_hf.py`` in the transformers
repository; the installed wheel does not ship them, so they are written again here), onto the
names transformers 5 keeps in its state dict (``encoder.aifi``, ``o_proj``, ``mlp.fc1``). Packed
attention weights (``in_proj_weight``) are split into ``q/k/v_proj`` as the scripts'
``read_in_q_k_v`` does. A key no rule knows is refused by name.

**Architecture.** The file holds no config: every size is read off the tensor shapes (backbone
depths and widths, which stages feed the encoder, encoder width and FFN, AIFI layers, decoder
layers, levels, FFN, classes, D-FINE's bins, LQE, ``reg_scale``/``up`` and points per level), so
models of any size open, not only the released ones (rtdetr_r18vd/r34vd/r50vd/r101vd,
dfine_n/s/m/l/x on COCO or Objects365). What weights cannot say is assumed at the authors'
defaults, each named where it is set (see :func:`_shared_config`); ``Checkpoint.assumptions``
lists those the user may change (``num_queries``, and ``nheads`` for RT-DETR v1, whose weights
hold heads x points only; v2 and D-FINE keep the points per level, which gives the heads).
An RT-DETR trained with learned query content (``decoder.tgt_embed``: v1's ``learnt_init_query``,
v2's and D-FINE's ``learn_query_content``) opens with transformers' ``learn_initial_query``, its rows giving
``num_queries`` (then not an assumption, and not settable); so does a D-FINE file with one
(``learn_query_content``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from detr_core.checkpoint_types import Checkpoint, CheckpointError
from detr_core.data.coco_names import COCO_CLASS_NAMES

SOURCES = {"rt_detr": "lyuwenyu/RT-DETR", "rt_detr_v2": "lyuwenyu/RT-DETR", "d_fine": "Peterande/D-FINE"}
TITLES = {"rt_detr": "RT-DETR", "rt_detr_v2": "RT-DETRv2", "d_fine": "D-FINE"}

# The authors' defaults for what the weights cannot say (all their released configs use them)
DEFAULT_HEADS = 8  # RT-DETR: nhead=8 (encoder and decoder); heads x points is all its shapes hold
DEFAULT_QUERIES = 300  # num_queries=300: queries are chosen from encoder tokens, no weight has Q rows

# --- names ---------------------------------------------------------------------------------------
# (the authors' prefix, transformers' prefix): "#" is a number, "@" a module name (stem1, conv2 ...);
# both sides hold them in the same order. A key's rest (".weight", "running_mean" ...) is kept.
_CONV = (("conv.", "convolution."), ("bn.", "normalization."), ("lab.", "lab."))
_BN = ("weight", "bias", "running_mean", "running_var")

_PRESNET = [  # RT-DETR's PResNet (variant d) -> transformers' RTDetrResNetBackbone
    ("backbone.conv1.conv1_1.conv.", "model.backbone.model.embedder.embedder.0.convolution."),
    ("backbone.conv1.conv1_1.norm.", "model.backbone.model.embedder.embedder.0.normalization."),
    ("backbone.conv1.conv1_2.conv.", "model.backbone.model.embedder.embedder.1.convolution."),
    ("backbone.conv1.conv1_2.norm.", "model.backbone.model.embedder.embedder.1.normalization."),
    ("backbone.conv1.conv1_3.conv.", "model.backbone.model.embedder.embedder.2.convolution."),
    ("backbone.conv1.conv1_3.norm.", "model.backbone.model.embedder.embedder.2.normalization."),
    # the shortcut: an avg-pool then a conv where the block downsamples (variant d), a conv else
    ("backbone.res_layers.#.blocks.#.short.conv.conv.", "model.backbone.model.encoder.stages.#.layers.#.shortcut.1.convolution."),
    ("backbone.res_layers.#.blocks.#.short.conv.norm.", "model.backbone.model.encoder.stages.#.layers.#.shortcut.1.normalization."),
    ("backbone.res_layers.#.blocks.#.short.conv.", "model.backbone.model.encoder.stages.#.layers.#.shortcut.convolution."),
    ("backbone.res_layers.#.blocks.#.short.norm.", "model.backbone.model.encoder.stages.#.layers.#.shortcut.normalization."),
] + [
    (f"backbone.res_layers.#.blocks.#.branch2{b}.{ours}", f"model.backbone.model.encoder.stages.#.layers.#.layer.{i}.{theirs}")
    for i, b in enumerate("abc") for ours, theirs in (("conv.", "convolution."), ("norm.", "normalization."))
]

_HGNET = [  # D-FINE's HGNetV2 -> transformers' HGNetV2Backbone
    (f"backbone.{where}{ours}", f"model.backbone.model.{there}{theirs}")
    for where, there in (
        ("stem.@.", "embedder.@."),
        ("stages.#.downsample.", "encoder.stages.#.downsample."),
        ("stages.#.blocks.#.aggregation.#.", "encoder.stages.#.blocks.#.aggregation.#."),
        ("stages.#.blocks.#.layers.#.@.", "encoder.stages.#.blocks.#.layers.#.@."),  # light blocks: conv1, conv2
        ("stages.#.blocks.#.layers.#.", "encoder.stages.#.blocks.#.layers.#."),
    )
    for ours, theirs in _CONV
]

# RT-DETR's own HGNetv2 (lyuwenyu/RT-DETR rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py, ported from
# PaddleDetection's ppdet/modeling/backbones/hgnet_v2.py; rtdetrv2_hgnetv2_l/x/h, whose configs set
# no use_lab; the file read in two forks' copies with the same modules, GomulkaK/RT-DETR at 02507a5
# and supervisely-ecosystem/RT-DETRv2 at 2e4a919) -> the same
# HGNetV2Backbone. It differs from D-FINE's only in names: the 2x2 stem convs pad with an
# nn.ZeroPad2d inside an nn.Sequential (``stem2a.conv.1``: transformers F.pads before the same
# conv) and a block's two 1x1 aggregation convs are named, not numbered (transformers'
# ``aggregation`` Sequential is built from ``aggregation_squeeze_conv`` and ``..._excitation_conv``)
_HGNET_RT_DETR = [
    (f"backbone.stem.{stem}.conv.1.", f"model.backbone.model.embedder.{stem}.convolution.") for stem in ("stem2a", "stem2b")
] + [
    (f"backbone.stages.#.blocks.#.aggregation_{name}_conv.{ours}",
     f"model.backbone.model.encoder.stages.#.blocks.#.aggregation.{i}.{theirs}")
    for i, name in enumerate(("squeeze", "excitation")) for ours, theirs in _CONV
] + _HGNET

_AIFI = [  # the hybrid encoder's attention layers (both families)
    ("encoder.encoder.#.layers.#.self_attn.", "model.encoder.aifi.#.layers.#.self_attn."),  # q/k/v split below
    ("encoder.encoder.#.layers.#.norm1.", "model.encoder.aifi.#.layers.#.self_attn_layer_norm."),
    ("encoder.encoder.#.layers.#.norm2.", "model.encoder.aifi.#.layers.#.final_layer_norm."),
    ("encoder.lateral_convs.", "model.encoder.lateral_convs."),
]

_HEADS = [  # query selection, denoising and the per-layer heads (both families)
    ("decoder.denoising_class_embed.", "model.denoising_class_embed."),
    ("decoder.query_pos_head.", "model.decoder.query_pos_head."),
    ("decoder.enc_score_head.", "model.enc_score_head."),
    ("decoder.enc_bbox_head.", "model.enc_bbox_head."),
    ("decoder.dec_score_head.#.", "model.decoder.class_embed.#."),
    ("decoder.dec_bbox_head.#.", "model.decoder.bbox_embed.#."),
    ("decoder.input_proj.#.conv.", "model.decoder_input_proj.#.0."),
    ("decoder.input_proj.#.norm.", "model.decoder_input_proj.#.1."),
    ("decoder.decoder.layers.#.self_attn.", "model.decoder.layers.#.self_attn."),  # q/k/v split below
    ("decoder.decoder.layers.#.cross_attn.", "model.decoder.layers.#.encoder_attn."),
    ("decoder.decoder.layers.#.norm1.", "model.decoder.layers.#.self_attn_layer_norm."),
    ("decoder.decoder.layers.#.norm3.", "model.decoder.layers.#.final_layer_norm."),
]

RT_DETR_RULES = _AIFI + _HEADS + [  # lyuwenyu/RT-DETR rtdetr_pytorch (v1)
    ("encoder.encoder.#.layers.#.linear1.", "model.encoder.aifi.#.layers.#.mlp.fc1."),
    ("encoder.encoder.#.layers.#.linear2.", "model.encoder.aifi.#.layers.#.mlp.fc2."),
    ("encoder.input_proj.#.0.", "model.encoder_input_proj.#.0."),
    ("encoder.input_proj.#.1.", "model.encoder_input_proj.#.1."),
    ("encoder.fpn_blocks.", "model.encoder.fpn_blocks."),  # CSPRepLayer: the same names
    ("encoder.pan_blocks.", "model.encoder.pan_blocks."),
    ("encoder.downsample_convs.", "model.encoder.downsample_convs."),
    ("decoder.enc_output.", "model.enc_output."),  # nn.Sequential(Linear, LayerNorm): 0, 1
    ("decoder.decoder.layers.#.norm2.", "model.decoder.layers.#.encoder_attn_layer_norm."),
    ("decoder.decoder.layers.#.linear1.", "model.decoder.layers.#.mlp.fc1."),
    ("decoder.decoder.layers.#.linear2.", "model.decoder.layers.#.mlp.fc2."),
    # learned query content (v1's learnt_init_query, v2's learn_query_content: the decoder's queries
    # start from these Q rows, not from the selected encoder tokens): rtdetr_decoder.py and
    # rtdetrv2_decoder.py ``self.tgt_embed = nn.Embedding(num_queries, hidden_dim)`` ->
    # transformers' modeling_rt_detr.py / modeling_rt_detr_v2.py ``self.weight_embedding``
    # (made when ``learn_initial_query``)
    ("decoder.tgt_embed.", "model.weight_embedding."),
]

RT_DETR_V2_RULES = [  # lyuwenyu/RT-DETR rtdetrv2_pytorch (convert_rt_detr_v2_weights_to_hf.py)
    ("encoder.input_proj.#.conv.", "model.encoder_input_proj.#.0."),
    ("encoder.input_proj.#.norm.", "model.encoder_input_proj.#.1."),
    ("decoder.enc_output.proj.", "model.enc_output.0."),
    ("decoder.enc_output.norm.", "model.enc_output.1."),
    ("decoder.decoder.layers.#.cross_attn.num_points_scale", "model.decoder.layers.#.encoder_attn.n_points_scale"),
] + RT_DETR_RULES

_ELAN = [  # D-FINE's RepNCSPELAN4 blocks (cv1..cv4) -> transformers' names
    (f"encoder.{blocks}.#.{ours}", f"model.encoder.{blocks}.#.{theirs}")
    for blocks in ("fpn_blocks", "pan_blocks")
    for ours, theirs in (("cv1.", "conv1."), ("cv2.0.", "csp_rep1."), ("cv2.1.", "conv2."),
                         ("cv3.0.", "csp_rep2."), ("cv3.1.", "conv3."), ("cv4.", "conv4."))
]

D_FINE_RULES = _AIFI + _HEADS + _ELAN + [  # Peterande/D-FINE
    # learned query content (dfine_decoder.py's learn_query_content, the same
    # ``content = self.tgt_embed.weight.unsqueeze(0).tile([B, 1, 1])`` as RT-DETRv2's) ->
    # transformers' modeling_d_fine.py ``self.weight_embedding`` (made when ``learn_initial_query``)
    ("decoder.tgt_embed.", "model.weight_embedding."),
    ("encoder.encoder.#.layers.#.linear1.", "model.encoder.aifi.#.layers.#.mlp.layers.0."),
    ("encoder.encoder.#.layers.#.linear2.", "model.encoder.aifi.#.layers.#.mlp.layers.1."),
    ("encoder.input_proj.#.conv.", "model.encoder_input_proj.#.0."),
    ("encoder.input_proj.#.norm.", "model.encoder_input_proj.#.1."),
    ("encoder.downsample_convs.#.0.cv#.", "model.encoder.downsample_convs.#.conv#."),  # SCDown
    ("decoder.enc_output.proj.", "model.enc_output.0."),
    ("decoder.enc_output.norm.", "model.enc_output.1."),
    ("decoder.decoder.layers.#.gateway.", "model.decoder.layers.#.gateway."),
    ("decoder.decoder.layers.#.linear1.", "model.decoder.layers.#.mlp.layers.0."),
    ("decoder.decoder.layers.#.linear2.", "model.decoder.layers.#.mlp.layers.1."),
    ("decoder.decoder.lqe_layers.", "model.decoder.lqe_layers."),
    ("decoder.pre_bbox_head.", "model.decoder.pre_bbox_head."),
    ("decoder.reg_scale", "model.decoder.reg_scale"),
    ("decoder.up", "model.decoder.up"),
    # the decoder holds its parent's up/reg_scale a second time (the same values)
    ("decoder.decoder.reg_scale", "model.decoder.reg_scale"),
    ("decoder.decoder.up", "model.decoder.up"),
]

# Kept by the authors' modules but not weights: anchors made for one input size (transformers
# makes them for each input)
_IGNORED = re.compile(r"^decoder\.(anchors|valid_mask)$")


def _pattern(template: str) -> re.Pattern:
    body = re.escape(template).replace("\\#", "#").replace("\\@", "@")
    return re.compile("^" + body.replace("#", r"(\d+)").replace("@", r"([A-Za-z][A-Za-z0-9_]*)") + "(.*)$")


def _fill(template: str, values: tuple[str, ...]) -> str:
    parts = iter(values)
    return re.sub(r"[#@]", lambda m: next(parts), template)


def _rename(key: str, rules: list[tuple[str, str]], reverse: bool = False) -> str | None:
    for ours, theirs in rules:
        src, dst = (theirs, ours) if reverse else (ours, theirs)
        m = _pattern(src).match(key)
        if m:
            *values, rest = m.groups()
            return _fill(dst, tuple(values)) + rest
    return None


def backbone_rules(state: dict[str, Any]) -> list[tuple[str, str]]:
    """The backbone's renames: PResNet (``backbone.res_layers``) or HGNetV2 (``backbone.stages``), in
    D-FINE's layout or RT-DETR's (``aggregation_squeeze_conv``, the stem's padded ``conv.1``)."""
    if any(k.startswith("backbone.res_layers.") for k in state):
        return _PRESNET
    if any(k.startswith("backbone.stages.") for k in state):
        rt_detr = any(".aggregation_squeeze_conv." in k or k.startswith("backbone.stem.stem2a.conv.1.") for k in state)
        return _HGNET_RT_DETR if rt_detr else _HGNET
    return []


def family_of(state: dict[str, Any]) -> str | None:
    """``"rt_detr"``, ``"rt_detr_v2"`` or ``"d_fine"`` for an authors' state dict (by its keys), else None."""
    keys = [k for k in state if isinstance(k, str)]
    if not (any(k.startswith("decoder.dec_score_head.") for k in keys)
            and any(k.startswith("encoder.input_proj.") for k in keys)
            and any(k.startswith("backbone.") for k in keys)):
        return None
    if any(k.startswith("decoder.decoder.lqe_layers.") for k in keys):
        return "d_fine"
    # v2's deformable attention keeps 1/points per sampling point (v1's has no buffer)
    return "rt_detr_v2" if "decoder.decoder.layers.0.cross_attn.num_points_scale" in keys else "rt_detr"


RULES = {"rt_detr": RT_DETR_RULES, "rt_detr_v2": RT_DETR_V2_RULES, "d_fine": D_FINE_RULES}


def to_transformers(state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """The authors' state dict -> transformers' names. Raises CheckpointError on keys no rule knows."""
    rules = backbone_rules(state) + RULES[family]
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        if _IGNORED.search(key):
            continue
        new = _rename(key, rules)
        if new is None:
            unknown.append(key)
            continue
        packed = re.match(r"^(.*\.self_attn\.)in_proj_(weight|bias)$", new)
        if packed:  # nn.MultiheadAttention's [q; k; v] rows -> three projections (read_in_q_k_v)
            for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0)):
                out[f"{packed[1]}{name}_proj.{packed[2]}"] = part.clone()
            continue
        out[re.sub(r"\.self_attn\.out_proj\.", ".self_attn.o_proj.", new)] = value
    if unknown:
        raise CheckpointError(f"an official {TITLES[family]} file with {len(unknown)} weight(s) of no known layout "
                              f"(e.g. {', '.join(unknown[:3])})")
    return out


def to_official(hf_state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """transformers' names -> the authors' (the inverse of :func:`to_transformers`, which the tests
    use to write files in the authors' layout from a transformers model). transformers' copies of
    the per-layer heads outside ``model.`` are left out (the authors keep one). An HGNetV2 is
    written in the family's own layout (RT-DETR's or D-FINE's)."""
    hgnet = any(".embedder.stem" in k for k in hf_state)
    rules = ((_HGNET if family == "d_fine" else _HGNET_RT_DETR) if hgnet else _PRESNET) + RULES[family]
    out: dict[str, torch.Tensor] = {}
    packed: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in hf_state.items():
        if not key.startswith("model.") or key.endswith("num_batches_tracked"):
            continue
        m = re.match(r"^(.*\.self_attn\.)(q|k|v)_proj\.(weight|bias)$", key)
        if m:
            packed.setdefault(f"{m[1]}in_proj_{m[3]}", {})[m[2]] = value
            continue
        key = re.sub(r"\.self_attn\.o_proj\.", ".self_attn.out_proj.", key)
        new = _rename(key, rules, reverse=True)
        if new is None:
            raise KeyError(f"no official name for {key}")
        out[new] = value
    for key, parts in packed.items():
        out[_rename(key, rules, reverse=True)] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


# --- architecture --------------------------------------------------------------------------------

def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered children ``prefix`` has (``prefix`` + "0.", "1." ...)."""
    n = len(prefix)
    heads = (k[n:].split(".", 1)[0] for k in state if k.startswith(prefix))
    found = {int(h) for h in heads if h.isdigit()}
    return max(found) + 1 if found else 0


def _shape(state: dict[str, torch.Tensor], key: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointError(f"no {key} in the file (its layout is not RT-DETR's nor D-FINE's)")
    return tuple(state[key].shape)


def _first_of(state: dict[str, torch.Tensor], *keys: str) -> str:
    """The first of ``keys`` in ``state`` (the last when none is, for the message naming it)."""
    return next((k for k in keys if k in state), keys[-1])


def _stages_for(widths: list[int], in_channels: list[int], what: str) -> list[int]:
    """The backbone stages (1-based) whose output widths are the encoder's inputs: the last ones."""
    n = len(in_channels)
    if n == 0 or n > len(widths) or widths[-n:] != in_channels:
        raise CheckpointError(f"the encoder reads features of widths {in_channels}, but the {what} backbone's "
                              f"stages give {widths}")
    return list(range(len(widths) - n + 1, len(widths) + 1))


def _presnet(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """transformers' ``RTDetrResNetConfig`` of a PResNet state (transformers' names)."""
    base = "model.backbone.model."
    stages = _count(state, base + "encoder.stages.")
    depths = [_count(state, f"{base}encoder.stages.{s}.layers.") for s in range(stages)]
    bottleneck = f"{base}encoder.stages.0.layers.0.layer.2.convolution.weight" in state
    last = 2 if bottleneck else 1
    widths = [_shape(state, f"{base}encoder.stages.{s}.layers.{depths[s] - 1}.layer.{last}.convolution.weight")[0]
              for s in range(stages)]
    return {
        "model_type": "rt_detr_resnet", "layer_type": "bottleneck" if bottleneck else "basic",
        "embedding_size": _shape(state, f"{base}embedder.embedder.2.convolution.weight")[0],
        "depths": depths, "hidden_sizes": widths,
        # not in the weights: the stride of a downsampling bottleneck sits in its 3x3 conv (PResNet
        # variant d, which RT-DETR uses), relu
        "downsample_in_bottleneck": False, "downsample_in_first_stage": False, "hidden_act": "relu",
    }


def _hgnet(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """transformers' ``HGNetV2Config`` of an HGNetV2 state (transformers' names)."""
    base = "model.backbone.model."
    stages = _count(state, base + "encoder.stages.")
    cfg: dict[str, list] = {k: [] for k in ("stage_in_channels", "stage_mid_channels", "stage_out_channels",
                                            "stage_num_blocks", "stage_numb_of_layers", "stage_downsample",
                                            "stage_light_block", "stage_kernel_size")}
    for s in range(stages):
        stage = f"{base}encoder.stages.{s}."
        light = f"{stage}blocks.0.layers.0.conv1.convolution.weight" in state
        first = _shape(state, f"{stage}blocks.0.layers.0.{'conv1.' if light else ''}convolution.weight")
        mid = _shape(state, f"{stage}blocks.0.layers.0.{'conv2.' if light else ''}convolution.weight")
        cfg["stage_in_channels"].append(first[1])
        cfg["stage_mid_channels"].append(mid[0])
        cfg["stage_out_channels"].append(_shape(state, f"{stage}blocks.0.aggregation.1.convolution.weight")[0])
        cfg["stage_num_blocks"].append(_count(state, f"{stage}blocks."))
        cfg["stage_numb_of_layers"].append(_count(state, f"{stage}blocks.0.layers."))
        cfg["stage_downsample"].append(f"{stage}downsample.convolution.weight" in state)
        cfg["stage_light_block"].append(light)
        cfg["stage_kernel_size"].append(mid[-1])
    stem = [3, _shape(state, f"{base}embedder.stem1.convolution.weight")[0],
            _shape(state, f"{base}embedder.stem4.convolution.weight")[0]]
    return {
        "model_type": "hgnet_v2", **cfg, "stem_channels": stem, "embedding_size": stem[2],
        "hidden_sizes": list(cfg["stage_out_channels"]), "depths": list(cfg["stage_num_blocks"]),
        "use_learnable_affine_block": any(".lab." in k for k in state if k.startswith(base)),
        # not in the weights: the stem's and stages' strides (HGNetV2's, transformers' defaults), relu
    }


def _expansion(hidden: int, target: int, formula) -> float:
    """A ``hidden_expansion`` for which transformers' ``formula(expansion, hidden)`` gives ``target``
    channels (the plain ratio when exact; float rounding may need a half channel more)."""
    for e in (target / hidden, (target + 0.5) / hidden, (2 * target + 1) / hidden):
        if formula(e, hidden) == target:
            return e
    raise CheckpointError(f"no hidden_expansion gives the encoder's {target} channels (of {hidden})")


def _shared_config(s: dict[str, torch.Tensor], heads: int, queries: int) -> dict[str, Any]:
    """The fields RT-DETR and D-FINE configs share, read off a state with transformers' names."""
    levels_in = _count(s, "model.encoder_input_proj.")
    proj = [_shape(s, f"model.encoder_input_proj.{j}.0.weight") for j in range(levels_in)]
    in_channels = [p[1] for p in proj]
    hidden = proj[0][0] if proj else 0
    if "model.backbone.model.embedder.stem1.convolution.weight" in s:
        backbone = _hgnet(s)
        widths = backbone["stage_out_channels"]
    elif "model.backbone.model.embedder.embedder.2.convolution.weight" in s:
        backbone = _presnet(s)
        widths = backbone["hidden_sizes"]
    else:
        raise CheckpointError("a backbone that is neither PResNet (backbone.res_layers) nor HGNetV2 "
                              "(backbone.stem, backbone.stages)")
    stages = _stages_for(widths, in_channels, backbone["model_type"])
    backbone["out_features"] = [f"stage{i}" for i in stages]
    aifi = _count(s, "model.encoder.aifi.")
    # the decoder's projection of a level already d_model wide may be an identity (D-FINE): no weights
    levels = max(levels_in, _count(s, "model.decoder_input_proj."))
    d_model = _shape(s, "model.enc_output.0.weight")[0]
    ffn = _first_of(s, "model.decoder.layers.0.mlp.fc1.weight", "model.decoder.layers.0.mlp.layers.0.weight")
    classes = _shape(s, "model.decoder.class_embed.0.weight")[0]
    return {
        "backbone_config": backbone, "encoder_in_channels": in_channels, "encoder_hidden_dim": hidden,
        "feat_strides": [2 ** (i + 1) for i in stages],  # stage i of the backbone: stride 2^(i+1)
        "encoder_layers": _count(s, "model.encoder.aifi.0.layers."),
        "encoder_ffn_dim": _shape(s, _first_of(s, "model.encoder.aifi.0.layers.0.mlp.fc1.weight",
                                               "model.encoder.aifi.0.layers.0.mlp.layers.0.weight"))[0] if aifi else 1024,
        # not in the weights: AIFI runs on the coarsest level(s) (the authors' use_encoder_idx=[2];
        # D-FINE-N's [1] of its two levels)
        "encode_proj_layers": list(range(levels_in - aifi, levels_in)),
        "d_model": d_model, "num_feature_levels": levels,
        "decoder_in_channels": [s[f"model.decoder_input_proj.{i}.0.weight"].shape[1]
                                if f"model.decoder_input_proj.{i}.0.weight" in s else d_model for i in range(levels_in)],
        "decoder_ffn_dim": _shape(s, ffn)[0], "decoder_layers": _count(s, "model.decoder.layers."),
        "num_labels": classes,
        # not in the weights: the head count where it cannot be read (see the callers), the number of
        # queries (picked from encoder tokens: no weight has one row per query), the activations
        # (gelu in AIFI, silu in the CNN parts, relu in the decoder), post-norm layers, the sine
        # encoding's temperature 10000 and the norms' eps 1e-5: the authors' values, transformers' defaults
        "encoder_attention_heads": heads, "decoder_attention_heads": heads, "num_queries": queries,
        # training only (no denoising queries at inference), but transformers makes the class
        # embedding the file holds only when it is > 0: the authors' 100 then
        "num_denoising": 100 if "model.denoising_class_embed.weight" in s else 0,
        "id2label": {str(i): n for i, n in enumerate(class_names(classes))},
    }


def rt_detr_config(s: dict[str, torch.Tensor], heads: int = DEFAULT_HEADS,
                   queries: int = DEFAULT_QUERIES) -> dict[str, Any]:
    """The ``config.json`` (model_type ``rt_detr``) of an RT-DETR state with transformers' names.
    ``heads`` cannot be read off it (its sampling layer holds heads x points); assumed 8."""
    cfg = {"model_type": "rt_detr", **_shared_config(s, heads, queries)}
    hidden = cfg["encoder_hidden_dim"]
    if cfg["encoder_in_channels"][1:]:
        blocks = _count(s, "model.encoder.fpn_blocks.0.bottlenecks.")
        if blocks != 3:  # transformers' RTDetrCSPRepLayer has three
            raise CheckpointError(f"the encoder's CSP blocks hold {blocks} RepVGG blocks; transformers' RT-DETR has 3")
        inner = _shape(s, "model.encoder.fpn_blocks.0.conv1.conv.weight")[0]
        cfg["hidden_expansion"] = _expansion(hidden, inner, lambda e, h: int(h * e))
    if "model.weight_embedding.weight" in s:
        cfg["learn_initial_query"] = True  # the queries' content is learned (decoder.tgt_embed)
    weights = _shape(s, "model.decoder.layers.0.encoder_attn.attention_weights.weight")[0]
    per_head = weights / (heads * cfg["num_feature_levels"])
    if per_head != int(per_head) or per_head < 1:
        raise CheckpointError(f"the decoder samples {weights} points in all, which {heads} heads and "
                              f"{cfg['num_feature_levels']} levels do not divide (set nheads)")
    cfg["decoder_n_points"] = int(per_head)
    return cfg


def _points_per_level(s: dict[str, torch.Tensor], key: str) -> list[int]:
    """The sampling points per level, read off the attention's ``num_points_scale`` (1/n for each
    of a level's n points)."""
    scale = s.get(key)
    if scale is None:
        raise CheckpointError("no decoder.decoder.layers.0.cross_attn.num_points_scale in the file")
    points, i = [], 0
    while i < len(scale):
        n = round(1 / float(scale[i]))
        points.append(n)
        i += max(n, 1)
    return points


def rt_detr_v2_config(s: dict[str, torch.Tensor], heads: int | None = None,
                      queries: int = DEFAULT_QUERIES) -> dict[str, Any]:
    """The ``config.json`` (model_type ``rt_detr_v2``) of an RT-DETRv2 state with transformers'
    names: RT-DETR's, with the points per level (and so the heads) read off ``num_points_scale``."""
    points = _points_per_level(s, "model.decoder.layers.0.encoder_attn.n_points_scale")
    weights = _shape(s, "model.decoder.layers.0.encoder_attn.attention_weights.weight")[0]
    heads = heads or weights // sum(points)
    cfg = rt_detr_config(s, heads, queries)
    if len(set(points)) != 1 or len(points) != cfg["num_feature_levels"]:
        raise CheckpointError(f"points per level {points} (transformers' RT-DETRv2 samples as many on each of "
                              f"its {cfg['num_feature_levels']} levels)")
    # not in the weights: offsets scaled by 0.5 and bilinear sampling (decoder_method "default"; the
    # authors' "discrete" models hold the same weights and would need "discrete")
    cfg.update({"model_type": "rt_detr_v2", "decoder_n_levels": cfg["num_feature_levels"],
                "decoder_offset_scale": 0.5, "decoder_method": "default"})
    return cfg


def d_fine_config(s: dict[str, torch.Tensor], heads: int | None = None,
                  queries: int = DEFAULT_QUERIES) -> dict[str, Any]:
    """The ``config.json`` (model_type ``d_fine``) of a D-FINE state with transformers' names. The
    points per level are read off ``num_points_scale`` (1/n for each of a level's n points), and
    with them the head count."""
    points = _points_per_level(s, "model.decoder.layers.0.encoder_attn.num_points_scale")
    weights = _shape(s, "model.decoder.layers.0.encoder_attn.attention_weights.weight")[0]
    heads = heads or weights // sum(points)
    cfg = {"model_type": "d_fine", **_shared_config(s, heads, queries), "decoder_n_points": points}
    if "model.weight_embedding.weight" in s:
        cfg["learn_initial_query"] = True  # the queries' content is learned (decoder.tgt_embed)
    if len(points) != cfg["num_feature_levels"] or heads * sum(points) != weights:
        raise CheckpointError(f"the decoder's points per level {points} do not fit its {weights} attention "
                              f"weights and {cfg['num_feature_levels']} levels")
    hidden = cfg["encoder_hidden_dim"]
    if cfg["encoder_in_channels"][1:]:
        blocks = _count(s, "model.encoder.fpn_blocks.0.csp_rep1.bottlenecks.")
        cfg["depth_mult"] = blocks / 3  # round(3 * depth_mult) blocks
        outer = _shape(s, "model.encoder.fpn_blocks.0.conv2.conv.weight")[0]
        cfg["hidden_expansion"] = _expansion(hidden, outer, lambda e, h: round(e * h // 2))
    bins = _shape(s, f"model.decoder.bbox_embed.{cfg['decoder_layers'] - 1}.layers.2.weight")[0]
    lqe = _shape(s, "model.decoder.lqe_layers.0.reg_conf.layers.0.weight")
    cfg.update({
        "max_num_bins": bins // 4 - 1, "lqe_hidden_dim": lqe[0], "top_prob_values": lqe[1] // 4 - 1,
        "lqe_layers": _count(s, "model.decoder.lqe_layers.0.reg_conf.layers."),
        "reg_scale": float(s["model.decoder.reg_scale"].reshape(-1)[0]) if "model.decoder.reg_scale" in s else 4.0,
        "up": float(s["model.decoder.up"].reshape(-1)[0]) if "model.decoder.up" in s else 0.5,
        # not in the weights: the last layer predicts (eval_idx -1; the releases' value), no wider
        # layers after it (layer_scale 1), offsets scaled by 0.5 (decoder_offset_scale), bilinear sampling
        "eval_idx": -1, "layer_scale": 1.0, "decoder_offset_scale": 0.5, "decoder_method": "default",
    })
    return cfg


def class_names(n: int) -> list[str]:
    """COCO's 80 names (in the authors' contiguous order) for 80 classes, else "class i"."""
    coco = [c for c in COCO_CLASS_NAMES if c != "N/A"]
    return coco if n == len(coco) else [f"class {i}" for i in range(n)]


# --- opening -------------------------------------------------------------------------------------

def state_of(raw: dict) -> tuple[dict[str, torch.Tensor], str] | None:
    """(the state dict, where it was: "ema", "model" or "file") of an authors' file, else None."""
    ema = raw.get("ema")
    candidates = [(ema.get("module"), "ema")] if isinstance(ema, dict) else []
    candidates += [(raw.get("model"), "model"), (raw, "file")]
    for state, where in candidates:
        if isinstance(state, dict) and family_of(state) is not None:
            return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, where
    return None


def is_official(raw: Any) -> bool:
    return isinstance(raw, dict) and state_of(raw) is not None


def load_official(raw: dict, name: str) -> Checkpoint:
    """An authors' RT-DETR or D-FINE file (already read) as a Checkpoint of the wrapped family."""
    found = state_of(raw)
    if found is None:
        raise CheckpointError(f"{name}: not an RT-DETR or D-FINE file")
    state, where = found
    family = family_of(state)
    try:
        hf_state = to_transformers(state, family)
        ckpt = _checkpoint(family, hf_state, {}, where)
    except CheckpointError as e:
        raise CheckpointError(f"{name}: {e}") from None
    except (KeyError, IndexError, ValueError, ZeroDivisionError, TypeError, RuntimeError, AttributeError) as e:
        raise CheckpointError(f"{name}: an official {TITLES[family]} file with unexpected contents ({e})") from None
    return ckpt


def _checkpoint(family: str, hf_state: dict[str, torch.Tensor], settings: dict[str, Any], where: str,
                checked: dict[str, torch.Tensor] | None = None) -> Checkpoint:
    """A Checkpoint of the wrapped family from a state with transformers' names. ``checked``: the
    state dict of an earlier Checkpoint of the same file (``nheads`` and ``num_queries`` change no
    weight): reused as it is, else the model is laid out once to check the weights fit it."""
    from detr_core.model.hf_families import family_module
    from detr_core.model.registry import build_model

    queries = int(settings.get("num_queries", DEFAULT_QUERIES))
    learned = hf_state.get("model.weight_embedding.weight")  # [Q, D]: learned query content, one row a query
    if learned is not None:
        if "num_queries" in settings and queries != learned.shape[0]:
            raise CheckpointError(f"num_queries cannot be set for this file: its learned query content "
                                  f"(decoder.tgt_embed) holds {learned.shape[0]} queries")
        queries = learned.shape[0]
    if family in ("d_fine", "rt_detr_v2"):  # heads read off the points per level
        read = d_fine_config if family == "d_fine" else rt_detr_v2_config
        hf = read(hf_state, settings.get("nheads"), queries)
        assumptions = {}
    else:
        hf = rt_detr_config(hf_state, int(settings.get("nheads", DEFAULT_HEADS)), queries)
        assumptions = {"nheads": DEFAULT_HEADS}
    if learned is None:
        assumptions["num_queries"] = DEFAULT_QUERIES
    assumptions = {k: v for k, v in assumptions.items() if k not in settings}
    config = family_module(family).build.detr_config(hf)
    ckpt = Checkpoint(config, class_names(config.num_classes), checked or {}, source=SOURCES[family],
                      extra={"family": family, "weights": where}, assumptions=assumptions,
                      settings_hook=with_settings)
    if checked is not None:
        return ckpt
    with torch.device("meta"):  # the layout only (no memory, no initialisation)
        model = build_model(config)
    expected = model.state_dict()
    state = {f"detector.{k}": v for k, v in hf_state.items()}
    # transformers keeps the per-layer heads a second time outside ``model.`` when it does not tie them
    for key, value in hf_state.items():
        m = re.match(r"^model\.decoder\.((class_embed|bbox_embed)\..*)$", key)
        if m and f"detector.{m[1]}" in expected:
            state[f"detector.{m[1]}"] = value
    for key in expected:  # batch-norm step counters (not used at inference; files converted from Paddle lack them)
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    ckpt.state_dict = state
    problem = ckpt.problem(model)
    if problem:
        raise CheckpointError(problem.replace("described in the file", "read off the file's shapes"))
    return ckpt


REREAD = ("nheads", "num_queries")  # settings the weights could not say: the file is reread with them
# DETRConfig fields read off the weights (through transformers' config): not settable
READ_OFF_WEIGHTS = ("attention", "backbone", "transformers_config", "d_model", "num_encoder_layers",
                    "num_decoder_layers", "dim_feedforward", "num_classes", "num_feature_levels", "dec_n_points",
                    "with_box_refine", "two_stage")


def with_settings(ckpt: Checkpoint, **settings: Any) -> Checkpoint:
    """The same authors' file with settings applied: ``nheads`` and ``num_queries`` (what it could not
    say) reread it; others (e.g. ``image_min_size``) set the DETRConfig field. Earlier settings stay."""
    fixed = sorted(set(settings) & set(READ_OFF_WEIGHTS))
    if fixed:
        raise CheckpointError(f"{', '.join(fixed)} cannot be set for an official {ckpt.model_config.attention} file "
                              "(read off its weights)")
    merged = {**ckpt.extra.get("settings", {}), **settings}
    hf_state = {k[len("detector."):]: v for k, v in ckpt.state_dict.items() if k.startswith("detector.model.")}
    new = _checkpoint(ckpt.extra["family"], hf_state, {k: v for k, v in merged.items() if k in REREAD},
                      ckpt.extra.get("weights", "model"), checked=ckpt.state_dict)
    rest = {k: v for k, v in merged.items() if k not in REREAD}
    if rest:  # the generic path (Checkpoint.with_settings without this hook) for the other fields
        new = dataclasses.replace(dataclasses.replace(new, settings_hook=None).with_settings(**rest),
                                  settings_hook=with_settings)
    new.extra["settings"] = merged
    return new
