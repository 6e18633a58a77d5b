"""The authors' RT-DETR and RT-DETRv2 (lyuwenyu/RT-DETR) and D-FINE (Peterande/D-FINE) ``.pth`` files open as
the wrapped transformers families and reproduce transformers' forward. Small random transformers
models are written in the authors' layout (names as transformers' conversion scripts map from, in
their ``{"ema": {"module": ...}}`` and ``{"model": ...}`` wrappers); nothing is downloaded."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from detr_core.checkpoint import CheckpointError, load_checkpoint
from detr_core.data.images import IMAGENET_MEAN, IMAGENET_STD
from detr_core.formats.official_rt_detr import to_official

transformers = pytest.importorskip("transformers")

from tests.test_hf_families import _randomize_norms  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _randomize(model):
    """Every weight off transformers' initialisation (zero heads score all queries alike) and
    non-trivial batch-norm statistics (as the Hugging Face folder tests do)."""
    torch.manual_seed(3)
    return _randomize_norms(model).eval()


def tiny_rt_detr(**options):
    """A PResNet-vd with bottlenecks (a stage-1 shortcut conv, avg-pool shortcuts after), 8 heads
    (the authors' count, which the file cannot say), 3 classes; ``options``: more RTDetrConfig fields."""
    torch.manual_seed(0)
    backbone = transformers.RTDetrResNetConfig(embedding_size=16, hidden_sizes=[32, 48, 64, 96], depths=[1, 2, 1, 1],
                                               layer_type="bottleneck", out_features=["stage2", "stage3", "stage4"])
    config = transformers.RTDetrConfig(
        backbone_config=backbone, encoder_in_channels=[48, 64, 96], encoder_hidden_dim=32, d_model=32,
        encoder_ffn_dim=48, decoder_ffn_dim=40, decoder_layers=2, num_queries=12, decoder_in_channels=[32, 32, 32],
        hidden_expansion=0.5, num_labels=3, **options)
    return _randomize(transformers.RTDetrForObjectDetection(config))


def tiny_rt_detr_v2():
    """RT-DETRv2 on a basic-block PResNet (rtdetrv2_r18vd's layout), 2 heads (read off its points)."""
    torch.manual_seed(0)
    backbone = transformers.RTDetrResNetConfig(embedding_size=16, hidden_sizes=[16, 24, 32, 48], depths=[1, 1, 1, 1],
                                               layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = transformers.RTDetrV2Config(
        backbone_config=backbone, encoder_in_channels=[24, 32, 48], encoder_hidden_dim=32, d_model=32,
        encoder_ffn_dim=48, decoder_ffn_dim=40, encoder_attention_heads=2, decoder_attention_heads=2,
        decoder_layers=2, num_queries=12, decoder_in_channels=[32, 32, 32], decoder_n_points=3, num_labels=80)
    return _randomize(transformers.RTDetrV2ForObjectDetection(config))


def tiny_d_fine():
    """An HGNetV2 with light blocks and learnable affine blocks, 2 heads, points [2, 4, 2] per level,
    80 classes (COCO), D-FINE-N's odd hidden_expansion and depth_mult, non-default reg_scale and up."""
    torch.manual_seed(0)
    backbone = transformers.HGNetV2Config(
        stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 24, 32], stage_mid_channels=[8, 8, 16, 16],
        stage_out_channels=[16, 24, 32, 48], stage_num_blocks=[1, 2, 1, 1], stage_numb_of_layers=[2, 2, 2, 2],
        stage_light_block=[False, False, True, True], stage_kernel_size=[3, 3, 5, 5], hidden_sizes=[16, 24, 32, 48],
        depths=[1, 1, 1, 1], out_features=["stage2", "stage3", "stage4"], use_learnable_affine_block=True)
    config = transformers.DFineConfig(
        backbone_config=backbone, encoder_in_channels=[24, 32, 48], encoder_hidden_dim=32, d_model=32,
        encoder_ffn_dim=48, decoder_ffn_dim=40, encoder_attention_heads=2, decoder_attention_heads=2, decoder_layers=2,
        num_queries=12, decoder_in_channels=[32, 32, 32], num_labels=80, decoder_n_points=[2, 4, 2], max_num_bins=8,
        lqe_hidden_dim=16, depth_mult=0.34, hidden_expansion=0.34, reg_scale=3.0, up=0.25)
    return _randomize(transformers.DFineForObjectDetection(config))


@pytest.fixture(scope="module")
def rt_file(tmp_path_factory):
    """(transformers' model, the authors' file): the EMA weights beside other training weights, as
    their training saves; the EMA ones are the model's."""
    hf = tiny_rt_detr()
    state = to_official(hf.state_dict(), "rt_detr")
    path = tmp_path_factory.mktemp("official") / "rtdetr_r50vd_6x_coco.pth"
    torch.save({"model": {k: v + 1 for k, v in state.items()}, "ema": {"module": state, "updates": 7},
                "last_epoch": 3, "date": "2024-01-01"}, path)
    return hf, path


@pytest.fixture(scope="module")
def rt_opened(rt_file):
    """The file opened once, as the window and the command line open it."""
    return load_checkpoint(rt_file[1])


@pytest.fixture(scope="module")
def d_fine_file(tmp_path_factory):
    hf = tiny_d_fine()
    path = tmp_path_factory.mktemp("official") / "weights.pth"  # the name says nothing: the keys do
    state = to_official(hf.state_dict(), "d_fine")
    # as the authors' files hold them: the decoder's second reference to up/reg_scale, fixed anchors
    state.update({"decoder.decoder.up": state["decoder.up"], "decoder.decoder.reg_scale": state["decoder.reg_scale"],
                  "decoder.anchors": torch.zeros(1, 8400, 4), "decoder.valid_mask": torch.ones(1, 8400, 1)})
    torch.save({"model": state}, path)
    return hf, path


def _reproduces(hf, model, image: torch.Tensor) -> dict:
    pixels = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    with torch.no_grad():
        theirs = hf(pixel_values=pixels[None])  # [0, 1], as their processor gives it
        ours = model([image], capture=True)
    torch.testing.assert_close(ours["pred_logits"], theirs.logits, **TOL)
    torch.testing.assert_close(ours["pred_boxes"], theirs.pred_boxes, **TOL)
    return ours


def test_rt_detr_file_opens_as_rt_detr_and_reproduces_transformers(rt_file, rt_opened):
    hf, path = rt_file
    raw = torch.load(path)["ema"]["module"]
    # the names transformers' convert_rt_detr_original_pytorch_checkpoint_to_hf.py maps from
    for key in ("backbone.conv1.conv1_3.norm.running_var", "backbone.res_layers.0.blocks.0.short.conv.weight",
                "backbone.res_layers.1.blocks.0.short.conv.conv.weight", "backbone.res_layers.2.blocks.0.branch2c.norm.bias",
                "encoder.input_proj.2.0.weight", "encoder.encoder.0.layers.0.self_attn.in_proj_weight",
                "encoder.fpn_blocks.0.bottlenecks.2.conv1.conv.weight", "encoder.pan_blocks.1.conv3.norm.weight",
                "decoder.input_proj.0.conv.weight", "decoder.enc_output.1.weight", "decoder.denoising_class_embed.weight",
                "decoder.decoder.layers.1.cross_attn.sampling_offsets.bias", "decoder.decoder.layers.0.norm3.weight",
                "decoder.dec_bbox_head.1.layers.2.weight", "decoder.query_pos_head.layers.1.bias"):
        assert key in raw, key
    ckpt = rt_opened
    assert ckpt.source == "lyuwenyu/RT-DETR" and ckpt.extra["weights"] == "ema"
    assert ckpt.model_config.attention == "rt_detr" and ckpt.class_names == ["class 0", "class 1", "class 2"]
    assert ckpt.assumptions == {"nheads": 8, "num_queries": 300}  # what no weight says
    hf_config = ckpt.model_config.transformers_config
    assert hf_config["backbone_config"]["depths"] == [1, 2, 1, 1] and hf_config["hidden_expansion"] == 0.5
    assert hf_config["decoder_n_points"] == 4 and hf_config["feat_strides"] == [8, 16, 32]
    ckpt = ckpt.with_settings(num_queries=12)  # this model's (300 needs a larger image than the test's)
    assert ckpt.assumptions == {"nheads": 8} and ckpt.model_config.num_queries == 12
    torch.manual_seed(1)
    ours = _reproduces(hf, ckpt.build_model(), torch.randn(3, 64, 96))
    cap = ours["capture"]
    assert cap.layer_boxes.shape == (2, 1, 12, 4) and cap.attention.decoder_locations[0].shape == (1, 12, 8, 3, 4, 2)


def test_d_fine_file_opens_as_d_fine_and_reproduces_transformers(d_fine_file):
    hf, path = d_fine_file
    raw = torch.load(path)["model"]
    # the names transformers' convert_d_fine_original_pytorch_checkpoint_to_hf.py maps from
    for key in ("backbone.stem.stem2a.conv.weight", "backbone.stem.stem4.lab.scale",
                "backbone.stages.1.downsample.bn.running_mean", "backbone.stages.0.blocks.0.aggregation.1.conv.weight",
                "backbone.stages.2.blocks.0.layers.1.conv2.lab.bias", "encoder.input_proj.0.conv.weight",
                "encoder.fpn_blocks.0.cv2.0.bottlenecks.0.conv1.conv.weight", "encoder.pan_blocks.1.cv3.1.norm.weight",
                "encoder.fpn_blocks.1.cv4.conv.weight", "encoder.downsample_convs.0.0.cv2.conv.weight",
                "decoder.enc_output.proj.weight", "decoder.decoder.layers.1.gateway.gate.weight",
                "decoder.decoder.layers.0.cross_attn.num_points_scale", "decoder.decoder.lqe_layers.1.reg_conf.layers.1.bias",
                "decoder.pre_bbox_head.layers.2.weight", "decoder.reg_scale", "decoder.up"):
        assert key in raw, key
    ckpt = load_checkpoint(path)
    assert ckpt.source == "Peterande/D-FINE" and ckpt.extra["weights"] == "model"
    assert ckpt.model_config.attention == "d_fine" and ckpt.class_names[:3] == ["person", "bicycle", "car"]
    assert ckpt.assumptions == {"num_queries": 300}  # the heads come from the points per level
    hf_config = ckpt.model_config.transformers_config
    assert hf_config["decoder_attention_heads"] == 2 and hf_config["decoder_n_points"] == [2, 4, 2]
    decoder = hf.model.decoder  # the file's (randomized) values, not the config's 3.0 and 0.25
    assert (hf_config["reg_scale"], hf_config["up"]) == (decoder.reg_scale.item(), decoder.up.item())
    assert hf_config["max_num_bins"] == 8 and hf_config["depth_mult"] == 1 / 3
    # settings the weights hold nothing of go to the config; earlier settings stay
    ckpt = ckpt.with_settings(num_queries=12, image_min_size=64, image_max_size=96).with_settings(nheads=2)
    assert (ckpt.model_config.num_queries, ckpt.model_config.image_max_size, ckpt.model_config.nheads) == (12, 96, 2)
    torch.manual_seed(1)
    ours = _reproduces(hf, ckpt.build_model(), torch.randn(3, 64, 96))
    assert ours["capture"].edge_distributions.probabilities.shape == (2, 1, 12, 4, 9)


def test_rt_detr_v2_file_opens_as_rt_detr_v2_and_reproduces_transformers(tmp_path):
    hf = tiny_rt_detr_v2()
    state = to_official(hf.state_dict(), "rt_detr_v2")
    # the names transformers' convert_rt_detr_v2_weights_to_hf.py maps from (where they differ from v1's)
    for key in ("encoder.input_proj.1.conv.weight", "encoder.input_proj.1.norm.running_mean",
                "decoder.enc_output.proj.weight", "decoder.enc_output.norm.bias",
                "decoder.decoder.layers.1.cross_attn.num_points_scale", "backbone.res_layers.0.blocks.0.branch2b.conv.weight"):
        assert key in state, key
    assert not any("branch2c" in k for k in state)
    path = tmp_path / "rtdetrv2.pth"
    torch.save({"ema": {"module": state}}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.attention == "rt_detr_v2" and ckpt.source == "lyuwenyu/RT-DETR"
    assert ckpt.assumptions == {"num_queries": 300} and ckpt.model_config.nheads == 2 and len(ckpt.class_names) == 80
    torch.manual_seed(1)
    _reproduces(hf, ckpt.with_settings(num_queries=12).build_model(), torch.randn(3, 64, 96))


def test_damaged_unknown_and_misfit_files_are_refused_by_name(rt_file, rt_opened, d_fine_file, tmp_path):
    _, path = rt_file
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth: not a readable PyTorch checkpoint; is it corrupt or truncated"):
        load_checkpoint(truncated)
    state = torch.load(path)["ema"]["module"]
    extra = tmp_path / "extra.pth"
    torch.save({"model": {**state, "decoder.mystery_head.weight": torch.zeros(3)}}, extra)
    with pytest.raises(CheckpointError, match=r"extra.pth: an official RT-DETR file with 1 weight\(s\) of no known "
                                              r"layout \(e.g. decoder.mystery_head.weight\)"):
        load_checkpoint(extra)
    unknown = tmp_path / "unknown.pth"
    torch.save({"model": {"stem.weight": torch.zeros(2), "head.bias": torch.zeros(2)}}, unknown)
    with pytest.raises(CheckpointError, match="unknown.pth: not a DETR checkpoint"):
        load_checkpoint(unknown)
    misfit = tmp_path / "misfit.pth"  # the encoder reads widths no backbone stage gives
    torch.save({"model": {**state, "encoder.input_proj.0.0.weight": torch.zeros(32, 40, 1, 1)}}, misfit)
    with pytest.raises(CheckpointError, match=r"misfit.pth: the encoder reads features of widths \[40, 64, 96\], "
                                              r"but the rt_detr_resnet backbone's stages give \[32, 48, 64, 96\]"):
        load_checkpoint(misfit)
    ckpt = rt_opened
    with pytest.raises(CheckpointError, match="d_model cannot be set for an official rt_detr file"):
        ckpt.with_settings(d_model=64)
    with pytest.raises(CheckpointError, match="96 points in all, which 5 heads and 3 levels do not divide"):
        ckpt.with_settings(nheads=5)


def test_main_info_names_family_backbone_queries_and_classes(rt_file, capsys):
    from main import main

    hf, path = rt_file
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr()
    model = json.loads(out.out)["model"]
    assert model["family"] == "RT-DETR" and model["paper"].startswith("Zhao et al.")
    assert model["backbone"] == "rt_detr_resnet (bottleneck, depths 1-2-1-1)"
    assert model["queries"] == 300 and model["classes"] == 3
    assert model["parameters"] == sum(p.numel() for p in hf.parameters())
    assert "does not say its nheads; assumed 8" in out.err and "does not say its num_queries; assumed 300" in out.err


def test_rt_detr_file_with_learned_query_content_opens_with_learn_initial_query(tmp_path):
    """v1's ``learnt_init_query`` (v2's ``learn_query_content``): the decoder's queries start from
    ``decoder.tgt_embed``'s rows, not from the selected encoder tokens."""
    learned = tiny_rt_detr(learn_initial_query=True)
    state = to_official(learned.state_dict(), "rt_detr")
    assert state["decoder.tgt_embed.weight"].shape == (12, 32)  # rtdetr_decoder.py: nn.Embedding(num_queries, hidden_dim)
    path = tmp_path / "rtdetr_learned_queries.pth"
    torch.save({"ema": {"module": state}}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.transformers_config["learn_initial_query"] is True
    assert ckpt.model_config.num_queries == 12 and ckpt.assumptions == {"nheads": 8}  # the rows give the queries
    with pytest.raises(CheckpointError, match="num_queries cannot be set for this file: its learned query content "
                                              r"\(decoder.tgt_embed\) holds 12 queries"):
        ckpt.with_settings(num_queries=6)
    # transformers 5.24's own forward fails on this flag (it tiles the nn.Embedding, not its weight):
    # the reference is its model without the flag, its decoder fed the authors' query content
    # (rtdetr_decoder.py: target = self.tgt_embed.weight.unsqueeze(0).tile([bs, 1, 1]))
    reference = transformers.RTDetrForObjectDetection(
        transformers.RTDetrConfig.from_dict({**learned.config.to_dict(), "learn_initial_query": False})).eval()
    weights = learned.state_dict()
    content = weights.pop("model.weight_embedding.weight")  # [Q, D]
    reference.load_state_dict(weights)
    torch.manual_seed(1)
    image = torch.randn(3, 64, 96)
    pixels = (image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None])[None]
    with torch.no_grad():
        selected = reference(pixel_values=pixels).logits  # queries from the selected tokens

    def authors_content(module, args, kwargs):
        batch = kwargs["inputs_embeds"].shape[0]
        return args, {**kwargs, "inputs_embeds": content.unsqueeze(0).tile([batch, 1, 1])}  # [B, Q, D]

    reference.model.decoder.register_forward_pre_hook(authors_content, with_kwargs=True)
    ours = _reproduces(reference, ckpt.build_model(), image)
    assert not torch.allclose(ours["pred_logits"], selected, atol=1e-2)  # the learned content was used


def test_d_fine_file_with_learned_query_content_opens_with_learn_initial_query(d_fine_file, tmp_path):
    """D-FINE's ``learn_query_content`` (dfine_decoder.py: ``decoder.tgt_embed``, its rows the
    queries' content, tiled over the batch as RT-DETRv2's): opened with transformers' flag, the
    number of queries read off the rows."""
    hf, path = d_fine_file
    torch.manual_seed(2)
    content = torch.randn(12, 32)  # [Q, D]
    learned = tmp_path / "dfine_learned.pth"
    torch.save({"model": {**torch.load(path)["model"], "decoder.tgt_embed.weight": content}}, learned)
    ckpt = load_checkpoint(learned)
    assert ckpt.model_config.transformers_config["learn_initial_query"] is True
    assert ckpt.model_config.num_queries == 12 and ckpt.assumptions == {}

    def authors_content(module, args, kwargs):  # transformers 5.24's own forward fails on the flag
        batch = kwargs["inputs_embeds"].shape[0]
        return args, {**kwargs, "inputs_embeds": content.unsqueeze(0).tile([batch, 1, 1])}  # [B, Q, D]

    torch.manual_seed(1)
    image = torch.randn(3, 64, 96)
    pixels = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    with torch.no_grad():
        selected = hf(pixel_values=pixels[None]).logits  # queries from the selected tokens
    hook = hf.model.decoder.register_forward_pre_hook(authors_content, with_kwargs=True)
    try:
        ours = _reproduces(hf, ckpt.build_model(), image)
    finally:
        hook.remove()
    assert not torch.allclose(ours["pred_logits"], selected, atol=1e-2)  # the learned content was used


class _AuthorsConv(torch.nn.Module):
    """The authors' ConvBNAct (rtdetrv2_pytorch/src/nn/backbone/hgnetv2.py) with use_lab=False, as
    rtdetrv2_hgnetv2_l/x/h run it: ``conv`` (an nn.Sequential(ZeroPad2d([0, 1, 0, 1]), Conv2d) for
    padding='same'), ``bn``, ReLU when ``act``."""

    def __init__(self, cin, cout, kernel, stride=1, groups=1, act=True, same=False):
        super().__init__()
        conv = torch.nn.Conv2d(cin, cout, kernel, stride, padding=0 if same else (kernel - 1) // 2, groups=groups,
                               bias=False)
        self.conv = torch.nn.Sequential(torch.nn.ZeroPad2d([0, 1, 0, 1]), conv) if same else conv
        self.bn = torch.nn.BatchNorm2d(cout)
        self.act = torch.nn.ReLU() if act else torch.nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class _AuthorsHGNetv2(torch.nn.Module):
    """The module tree of the authors' HGNetv2 (StemBlock, HG_Stage, HG_Block, LightConvBNAct), written
    from their source to check that a file in their layout holds exactly its weights and computes
    what transformers' HGNetV2Backbone computes. ``stages``: (in, mid, out, blocks, downsample, light,
    kernel, layers) each, as their arch_configs; returns the last three stages' maps (return_idx [1, 2, 3])."""

    def __init__(self, stem, stages):
        super().__init__()
        self.stem = torch.nn.Module()
        self.stem.stem1 = _AuthorsConv(stem[0], stem[1], 3, 2)
        self.stem.stem2a = _AuthorsConv(stem[1], stem[1] // 2, 2, same=True)
        self.stem.stem2b = _AuthorsConv(stem[1] // 2, stem[1], 2, same=True)
        self.stem.stem3 = _AuthorsConv(stem[1] * 2, stem[1], 3, 2)
        self.stem.stem4 = _AuthorsConv(stem[1], stem[2], 1)
        self.stem.pool = torch.nn.Sequential(torch.nn.ZeroPad2d([0, 1, 0, 1]), torch.nn.MaxPool2d(2, 1, ceil_mode=True))
        self.stages = torch.nn.ModuleList()
        for cin, mid, cout, blocks, downsample, light, kernel, layers in stages:
            stage = torch.nn.Module()
            if downsample:  # else no module (theirs keeps ``downsample = False``)
                stage.downsample = _AuthorsConv(cin, cin, 3, 2, groups=cin, act=False)
            stage.blocks = torch.nn.Sequential()
            for b in range(blocks):
                block = torch.nn.Module()
                block.layers = torch.nn.ModuleList()
                for i in range(layers):
                    c = (cin if b == 0 else cout) if i == 0 else mid
                    if light:
                        layer = torch.nn.Module()
                        layer.conv1, layer.conv2 = _AuthorsConv(c, mid, 1, act=False), _AuthorsConv(mid, mid, kernel, groups=mid)
                    else:
                        layer = _AuthorsConv(c, mid, kernel)
                    block.layers.append(layer)
                total = (cin if b == 0 else cout) + layers * mid
                block.aggregation_squeeze_conv = _AuthorsConv(total, cout // 2, 1)
                block.aggregation_excitation_conv = _AuthorsConv(cout // 2, cout, 1)
                stage.blocks.append(block)
            self.stages.append(stage)

    def forward(self, x):
        s = self.stem
        x = s.stem1(x)
        x = s.stem4(s.stem3(torch.cat([s.pool(x), s.stem2b(s.stem2a(x))], 1)))
        outs = []
        for stage in self.stages:
            x = stage.downsample(x) if hasattr(stage, "downsample") else x
            for b, block in enumerate(stage.blocks):
                feats = [x]
                for layer in block.layers:
                    feats.append(layer.conv2(layer.conv1(feats[-1])) if hasattr(layer, "conv1") else layer(feats[-1]))
                y = block.aggregation_excitation_conv(block.aggregation_squeeze_conv(torch.cat(feats, 1)))
                x = y + x if b > 0 else y  # identity for all blocks but the first
            outs.append(x)
        return outs[1:]


def test_rt_detr_v2_file_with_the_authors_hgnetv2_opens_and_reproduces_transformers(tmp_path):
    """rtdetrv2_hgnetv2_l/x/h's backbone, in a tiny size: L's shape of stages (no downsampling in
    the first, light blocks with 5x5 kernels in the last two, several blocks in the third)."""
    torch.manual_seed(0)
    stages = [(8, 8, 16, 1, False, False, 3, 2), (16, 8, 24, 1, True, False, 3, 2),
              (24, 16, 32, 2, True, True, 5, 2), (32, 16, 48, 1, True, True, 5, 2)]
    backbone = transformers.HGNetV2Config(
        stem_channels=[3, 8, 8], **{f"stage_{k}": [s[i] for s in stages] for i, k in enumerate(
            ("in_channels", "mid_channels", "out_channels", "num_blocks", "downsample", "light_block", "kernel_size",
             "numb_of_layers"))},
        hidden_sizes=[16, 24, 32, 48], depths=[1, 1, 2, 1], out_features=["stage2", "stage3", "stage4"])
    config = transformers.RTDetrV2Config(
        backbone_config=backbone, encoder_in_channels=[24, 32, 48], encoder_hidden_dim=32, d_model=32,
        encoder_ffn_dim=48, decoder_ffn_dim=40, encoder_attention_heads=2, decoder_attention_heads=2,
        decoder_layers=2, num_queries=12, decoder_in_channels=[32, 32, 32], decoder_n_points=2, num_labels=80)
    hf = _randomize(transformers.RTDetrV2ForObjectDetection(config))
    state = to_official(hf.state_dict(), "rt_detr_v2")
    # the file holds exactly the authors' backbone weights (their names, no more, no fewer) ...
    authors = _AuthorsHGNetv2([3, 8, 8], stages).eval()
    authors.load_state_dict({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")})
    assert "backbone.stem.stem2a.conv.1.weight" in state and "backbone.stages.2.blocks.1.aggregation_squeeze_conv.bn.weight" in state
    # ... and their backbone computes transformers' (the stem's ZeroPad2d inside ``conv`` and before
    # the pool is transformers' F.pad before the same conv and pool)
    pixels = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        for ours, theirs in zip(authors(pixels), hf.model.backbone.model(pixels).feature_maps, strict=True):
            torch.testing.assert_close(ours, theirs, **TOL)
    path = tmp_path / "rtdetrv2_hgnetv2_l.pth"
    torch.save({"ema": {"module": state}}, path)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config.attention == "rt_detr_v2"
    hf_backbone = ckpt.model_config.transformers_config["backbone_config"]
    assert hf_backbone["model_type"] == "hgnet_v2" and hf_backbone["stage_downsample"] == [False, True, True, True]
    assert hf_backbone["stage_light_block"] == [False, False, True, True] and hf_backbone["stage_num_blocks"] == [1, 1, 2, 1]
    torch.manual_seed(1)
    _reproduces(hf, ckpt.with_settings(num_queries=12).build_model(), torch.randn(3, 64, 96))
