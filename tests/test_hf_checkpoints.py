"""Other libraries' files open to the same predictions and attention as their own forward pass:
Hugging Face ``save_pretrained`` folders (checked against ``transformers``), official-format
files (DC5, panoptic, weights-only), and exports to both formats round-trip. Tiny random models;
nothing is downloaded (HF_HUB_OFFLINE)."""

import argparse
import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

import tqdm

tqdm.tqdm.monitor_interval = 0  # no monitor thread left running after a test

from detr_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from detr_core.config import DETRConfig
from detr_core.export import export, export_problems
from detr_core.model.detr import DETR
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list

transformers = pytest.importorskip("transformers")

TOL = {"rtol": 1e-4, "atol": 1e-4}


def _hf_model(layer_type="bottleneck", heads=4, **kw):
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    torch.manual_seed(0)
    hidden = [16, 32, 48, 64] if layer_type == "bottleneck" else [8, 16, 24, 32]
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=hidden, depths=[1, 2, 1, 1], layer_type=layer_type,
                            out_features=["stage4"])
    config = DetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
        encoder_layers=1, decoder_layers=2, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=48, decoder_ffn_dim=48, num_queries=6, num_labels=3, dropout=0.0,
        id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2},
        attn_implementation="eager", **kw,
    )
    model = DetrForObjectDetection(config).eval()
    with torch.no_grad():  # random, non-trivial frozen batch norms
        for name, buf in model.named_buffers():
            if "running_var" in name:
                buf.uniform_(0.5, 1.5)
            elif "running_mean" in name or name.endswith("normalization.bias"):
                buf.normal_(0, 0.1)
    return model


def _images():
    torch.manual_seed(1)
    return [torch.randn(3, 64, 80), torch.randn(3, 48, 64)]


def _hf_forward(model, images):
    batch = nested_tensor_from_tensor_list(images)
    with torch.no_grad():
        out = model(pixel_values=batch.tensors, pixel_mask=(~batch.mask).long(), output_attentions=True)
    return out.logits, out.pred_boxes, out.cross_attentions[-1]


def _our_forward(model, images):
    with torch.no_grad():
        out = model(images, capture=True)
    cross = out["capture"].attention.decoder_cross[-1].weights  # [B, heads, Q, S]
    return out["pred_logits"], out["pred_boxes"], cross


def _compare(a, b):
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, **TOL)


@pytest.mark.parametrize("layer_type,weights_name", [("bottleneck", "safetensors"), ("basic", "bin")])
def test_hf_folder_opens_to_the_same_outputs(tmp_path, layer_type, weights_name):
    hf = _hf_model(layer_type)
    hf.save_pretrained(tmp_path / "m", safe_serialization=weights_name == "safetensors")
    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt.class_names == ["cat", "dog", "bird"] and ckpt.source == "huggingface/transformers"
    cfg = ckpt.model_config
    assert (cfg.nheads, cfg.d_model, cfg.num_queries, cfg.dim_feedforward) == (4, 32, 6, 48)
    assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.backbone) == (1, 2, "resnet")
    ours = ckpt.build_model()
    images = _images()
    _compare(_our_forward(ours, images[:1]), _hf_forward(hf, images[:1]))  # one image
    _compare(_our_forward(ours, images), _hf_forward(hf, images))  # a padded batch of two sizes
    # the files picked one by one open the same model
    weights = next(p for p in (tmp_path / "m").iterdir() if p.suffix in (".safetensors", ".bin"))
    for picked in (tmp_path / "m" / "config.json", weights):
        assert load_checkpoint(picked).state_dict.keys() == ckpt.state_dict.keys()


def test_hf_auxiliary_loss_model_opens_to_the_same_outputs(tmp_path):
    """``auxiliary_loss=True`` (what fine-tuning with auxiliary losses in transformers saves) changes
    transformers' forward pass: its decoder's final LayerNorm also normalises every layer's output
    before the next layer takes it, and the last layer's output is normalised twice. With LayerNorms
    at their initial values that is nearly the identity, so they are made random here."""
    hf = _hf_model(auxiliary_loss=True)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "layer_norm" in name or "layernorm" in name:
                p.copy_(torch.rand_like(p) + 0.5 if name.endswith("weight") else torch.randn_like(p))
    hf.save_pretrained(tmp_path / "m")
    ckpt = load_checkpoint(tmp_path / "m")
    ours = ckpt.build_model()
    images = _images()
    _compare(_our_forward(ours, images), _hf_forward(hf, images))
    # every earlier layer's predictions: transformers' heads on its intermediate hidden states
    batch = nested_tensor_from_tensor_list(images)
    with torch.no_grad():
        inner = hf.model(pixel_values=batch.tensors, pixel_mask=(~batch.mask).long()).intermediate_hidden_states
        out = ours(images)
        hf_logits, hf_boxes = hf.class_labels_classifier(inner), hf.bbox_predictor(inner).sigmoid()
    assert len(out["aux_outputs"]) == 1
    for i, aux in enumerate(out["aux_outputs"]):
        _compare((aux["pred_logits"], aux["pred_boxes"]), (hf_logits[i], hf_boxes[i]))
    # and the explorer's export writes it back so transformers runs it the same way
    export(ckpt, "hf", tmp_path / "out")
    from transformers import DetrForObjectDetection

    again = DetrForObjectDetection.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    assert again.config.auxiliary_loss
    _compare(_hf_forward(again, images), _hf_forward(hf, images))


def test_every_detr_config_field_is_followed_refused_or_without_effect():
    """A DetrConfig field that changes transformers' forward pass cannot be ignored unnoticed: each
    is in one of hf.py's three tables (a new transformers version's new field fails here)."""
    from transformers import DetrConfig, PretrainedConfig

    from detr_core.formats import hf

    generic = set(PretrainedConfig().to_dict())
    fields = set(DetrConfig().to_dict()) - generic
    tables = [set(hf.HF_DETR_FOLLOWED), set(hf.HF_DETR_REFUSED), hf.HF_DETR_NO_EFFECT]
    assert "auxiliary_loss" in fields and "d_model" in fields  # the walk sees DETR's own fields
    unknown = sorted(f for f in fields if not any(f in t for t in tables))
    assert not unknown, f"DetrConfig fields neither followed, refused nor without effect: {unknown}"
    both = [f for i, a in enumerate(tables) for b in tables[i + 1:] for f in a & b]
    assert not both, f"fields in two tables: {both}"
    for name, (runs, _why) in hf.HF_DETR_REFUSED.items():  # what is refused is transformers' default
        assert getattr(DetrConfig(), name) == runs


def test_a_refused_field_is_named_with_its_value(tmp_path):
    import json

    hf = _hf_model()
    hf.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    for field, value, said in [("position_embedding_type", "learned", "position_embedding_type='learned'"),
                               ("activation_function", "gelu", "activation_function='gelu'")]:
        changed = {**config, field: value}
        (tmp_path / "m" / "config.json").write_text(json.dumps(changed))
        with pytest.raises(CheckpointError, match=f"{said} is not supported"):
            load_checkpoint(tmp_path / "m")
    # a backbone whose last selected feature map is not stage 4 (transformers projects that one)
    changed = {**config, "backbone_config": {**config["backbone_config"], "out_features": ["stage3"]}}
    (tmp_path / "m" / "config.json").write_text(json.dumps(changed))
    with pytest.raises(CheckpointError, match=r"backbone_config.out_features=\['stage3'\] is not supported"):
        load_checkpoint(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "activation_function": "relu"}))
    assert load_checkpoint(tmp_path / "m").model_config.num_queries == 6  # the defaults open


def _timm_name(key: str) -> str:
    """A transformers ResNetBackbone parameter name as timm's ResNet (torchvision's names) has it,
    under the prefix Hugging Face DETR's timm backbone uses (``use_timm_backbone=True``)."""
    import re

    prefix = "model.backbone.conv_encoder.model."
    if not key.startswith(prefix):
        return key
    rest = key[len(prefix):]
    rest = rest.replace("embedder.embedder.convolution.", "conv1.").replace("embedder.embedder.normalization.", "bn1.")
    m = re.match(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(shortcut|layer\.(\d+))\.(convolution|normalization)\.(.+)$",
                 rest)
    if m:
        stage, block, part, k, kind, param = m[1], m[2], m[3], m[4], m[5], m[6]
        if part == "shortcut":
            module = "downsample." + ("0" if kind == "convolution" else "1")
        else:
            module = ("conv" if kind == "convolution" else "bn") + str(int(k) + 1)
        rest = f"layer{int(stage) + 1}.{block}.{module}.{param}"
    return prefix + rest


def test_timm_backbone_layout_opens_to_the_same_outputs(tmp_path):
    """Hugging Face DETR files with a timm backbone (``facebook/detr-resnet-50`` is one) name the
    ResNet as timm does: ``model.backbone.conv_encoder.model.conv1.weight``, ``...layer1.0.conv1.weight``.
    timm is not installed here, so the file is made by renaming a transformers-backbone model's
    weights to timm's names (the same ResNet, the same numbers) and setting ``use_timm_backbone``."""
    import json

    from safetensors.torch import load_file, save_file

    hf = _hf_model("bottleneck")
    hf.save_pretrained(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    timm_weights = {_timm_name(k): v for k, v in weights.items()}
    assert "model.backbone.conv_encoder.model.layer1.0.conv1.weight" in timm_weights
    assert "model.backbone.conv_encoder.model.layer2.0.downsample.1.running_var" in timm_weights
    assert not any("embedder" in k or "stages" in k for k in timm_weights)
    save_file(timm_weights, tmp_path / "m" / "model.safetensors")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    # as the hub's timm configs say it (the loader reads the ResNet's size off the weight shapes)
    config.update(use_timm_backbone=True, backbone="resnet50", backbone_config=None, use_pretrained_backbone=False)
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))

    ckpt = load_checkpoint(tmp_path / "m")
    assert ckpt.model_config.resnet_block == "bottleneck" and ckpt.model_config.nheads == 4
    images = _images()
    _compare(_our_forward(ckpt.build_model(), images), _hf_forward(hf, images))


def test_hf_export_round_trips_through_transformers(tmp_path):
    hf = _hf_model()
    hf.save_pretrained(tmp_path / "m")
    ckpt = load_checkpoint(tmp_path / "m")
    export(ckpt, "hf", tmp_path / "out")
    from transformers import DetrForObjectDetection

    again = DetrForObjectDetection.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    images = _images()
    _compare(_hf_forward(again, images), _hf_forward(hf, images))
    assert again.config.id2label[1] == "dog"


def _reference_model(**kw):
    torch.manual_seed(0)
    config = DETRConfig(backbone="resnet", resnet_depths=(1, 1, 2, 1), resnet_widths=(8, 16, 32, 48, 64),
                        pretrained_backbone=False, d_model=32, nheads=4,
                        num_encoder_layers=1, num_decoder_layers=2, dim_feedforward=48, num_queries=6,
                        num_classes=3, dropout=0.0, **kw)
    return DETR(config).eval()


def test_reference_export_round_trip_and_hf_export(tmp_path):
    model = _reference_model()
    with torch.no_grad():  # a decoder norm that is not the identity on normalised inputs (as trained)
        model.transformer.decoder.norm.weight.uniform_(0.5, 1.5)
        model.transformer.decoder.norm.bias.normal_(0, 0.5)
    save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"])
    ckpt = load_checkpoint(tmp_path / "m.pt")
    # the reference builds standard ResNets only; its file format holds any (as written here)
    assert "non-standard" in " ".join(export_problems(ckpt.model_config, "reference"))
    from detr_core.formats.reference import reference_payload

    torch.save(reference_payload(ckpt.model_config, ckpt.state_dict), tmp_path / "ref.pth")
    with torch.serialization.safe_globals([argparse.Namespace]):
        raw = torch.load(tmp_path / "ref.pth", weights_only=True)
    assert raw["args"].hidden_dim == 32 and raw["args"].nheads == 4 and raw["args"].enc_layers == 1
    again = load_checkpoint(tmp_path / "ref.pth")
    assert not again.assumptions and again.model_config.nheads == 4
    images = _images()
    _compare(_our_forward(again.build_model(), images), _our_forward(model, images))
    # the same model through transformers
    export(ckpt, "hf", tmp_path / "hf")
    from transformers import DetrForObjectDetection

    hf = DetrForObjectDetection.from_pretrained(tmp_path / "hf", attn_implementation="eager").eval()
    _compare(_hf_forward(hf, images), _our_forward(model, images))
    # with the image processor of the model's own size (not transformers' default 800 / 1333),
    # which transformers reads as written and the explorer reads back to the same sizes
    from transformers import DetrImageProcessor

    for settings in ({"image_min_size": 96, "image_max_size": 160}, {"image_height": 96, "image_width": 128}):
        sized = ckpt.with_settings(**settings)
        export(sized, "hf", tmp_path / "sized")
        processor = DetrImageProcessor.from_pretrained(tmp_path / "sized")
        cfg, again = sized.model_config, load_checkpoint(tmp_path / "sized").model_config
        if cfg.fixed_input_size:  # stretched, as RT-DETR's processor does
            assert (processor.size["height"], processor.size["width"]) == cfg.fixed_input_size == (96, 128)
        else:
            assert (processor.size["shortest_edge"], processor.size["longest_edge"]) == (96, 160)
        assert (again.image_min_size, again.image_max_size, again.fixed_input_size) == (
            cfg.image_min_size, cfg.image_max_size, cfg.fixed_input_size)


def test_dc5_panoptic_and_weights_only_files(tmp_path):
    model = _reference_model(dilation=True)
    assert model.stride == 16
    state = model.state_dict()
    args = argparse.Namespace(dilation=True, nheads=4)
    torch.save({"model": state, "args": args}, tmp_path / "dc5.pth")
    ckpt = load_checkpoint(tmp_path / "dc5.pth")
    assert ckpt.model_config.dilation and not ckpt.assumptions
    images = _images()
    _compare(_our_forward(ckpt.build_model(), images), _our_forward(model, images))
    # panoptic: the detection part opens
    panoptic = {f"detr.{k}": v for k, v in state.items()} | {"bbox_attention.q_linear.weight": torch.zeros(4, 32)}
    torch.save({"model": panoptic, "args": args}, tmp_path / "panoptic.pth")
    ckpt = load_checkpoint(tmp_path / "panoptic.pth")
    assert ckpt.extra.get("panoptic")
    _compare(_our_forward(ckpt.build_model(), images), _our_forward(model, images))
    # weights only: the head count is assumed (8), said so, and can be set
    torch.save(state, tmp_path / "weights-dc5.pth")
    ckpt = load_checkpoint(tmp_path / "weights-dc5.pth")
    assert ckpt.assumptions == {"nheads": 8, "dilation": True}
    fixed = ckpt.with_settings(nheads=4)
    assert fixed.assumptions == {"dilation": True}
    _compare(_our_forward(fixed.build_model(), images), _our_forward(model, images))
    with pytest.raises(CheckpointError, match="unknown model setting"):
        ckpt.with_settings(heads=4)


def test_export_names_what_the_target_cannot_hold(tmp_path, tiny_config):
    save_checkpoint(tmp_path / "t.pt", DETR(tiny_config), ["a", "b", "c"])
    with pytest.raises(ValueError, match="tiny"):
        export(load_checkpoint(tmp_path / "t.pt"), "hf", tmp_path / "x")
    fast = DETRConfig(backbone="resnet18", query_type="anchor", classifier="focal", dn_groups=2, dense_aux=True)
    problems = " ".join(export_problems(fast, "reference"))
    for word in ("anchor", "focal", "denoising", "dense"):
        assert word in problems
    assert "pre-norm" in " ".join(export_problems(DETRConfig(pre_norm=True), "hf"))
    assert export_problems(DETRConfig(pre_norm=True), "reference") == []
    # Hugging Face's auxiliary_loss decoder: transformers runs it, the reference cannot
    between = DETRConfig(decoder_norm_between_layers=True)
    assert "auxiliary_loss" in " ".join(export_problems(between, "reference"))
    assert export_problems(between, "hf") == []


def test_cli_info_says_the_assumed_head_count_and_export_writes_both_formats(tmp_path, capsys):
    import json

    from main import main

    model = _reference_model()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    assert main(["info", str(tmp_path / "weights.pth")]) == 0
    captured = capsys.readouterr()
    assert "assumed 8" in captured.err and json.loads(captured.out)["assumed"] == {"nheads": 8}
    assert main(["info", str(tmp_path / "weights.pth"), "--set", "nheads=4"]) == 0
    assert json.loads(capsys.readouterr().out)["model_config"]["nheads"] == 4
    assert main(["export", str(tmp_path / "weights.pth"), "--set", "nheads=4", "--format", "hf",
                 str(tmp_path / "hf")]) == 0
    assert load_checkpoint(tmp_path / "hf").model_config.nheads == 4
    assert main(["export", str(tmp_path / "weights.pth"), "--format", "reference", str(tmp_path / "r.pth")]) == 1
    assert "non-standard" in capsys.readouterr().err


def test_window_exports_the_model(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from explorer.main_window import MainWindow
    from explorer.state import LoadedModel

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, checkpoint=None, runs_folder=tmp_path / "runs")
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.model is not None, timeout=20000)
    window.state.set_model(LoadedModel(_reference_model(), ["a", "b", "c"], "test"))
    assert window.export_model("hf", tmp_path / "hf")
    assert load_checkpoint(tmp_path / "hf").class_names == ["a", "b", "c"]
    errors = []
    window.show_error = lambda title, message: errors.append(message)
    assert not window.export_model("reference", tmp_path / "r.pth")  # a non-standard ResNet
    assert "non-standard" in errors[0]
    qtbot.waitUntil(lambda: window.state.result is not None, timeout=20000)


def test_window_says_the_assumed_head_count_and_sets_it(qtbot, tmp_path, settings, no_blocking_questions):
    """A weights-only file of a 4-head model opens with 8 heads assumed (the shapes are the same);
    the Model panel says so, and setting 4 there reopens the model to the true one's outputs."""
    import numpy as np
    from PySide6.QtCore import Qt

    from detr_core.analysis.capture import run_inference
    from detr_core.data.images import prepare
    from explorer.main_window import MainWindow

    true = _reference_model()  # nheads=4
    with torch.no_grad():  # sharper attention and heads than random ones: the head count shows
        for layer in true.transformer.decoder.layers:
            for attn in (layer.self_attn, layer.multihead_attn):
                attn.in_proj_weight[: 2 * 32].mul_(6)
        true.query_embed.weight.mul_(3)
    torch.save(true.state_dict(), tmp_path / "weights.pth")
    window = MainWindow(settings=settings, checkpoint=tmp_path / "weights.pth", runs_folder=tmp_path / "runs")
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: window.state.result is not None and not window.controller.queue.busy, timeout=20000)
    panel = window.model_info
    assert window.state.model.model.config.nheads == 8
    assert "heads: 8 (assumed" in panel.summary.text() and not panel.heads_row.isHidden()
    assert "8 is assumed" in panel.heads_hint.text()
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    x = prepare(image, 128, 160)  # (the window runs at the reference's 800 pixels; this is quicker)
    expected = run_inference(true, image, ["a", "b", "c"], input_tensor=x)
    assumed = run_inference(window.state.model.model, image, ["a", "b", "c"], input_tensor=x)
    # 8 heads: another model (far beyond the tolerance the true head count is held to below)
    assert (assumed.probs - expected.probs).abs().max() > 100 * TOL["atol"]
    assert (assumed.cross_attention.mean(1) - expected.cross_attention.mean(1)).abs().max() > 100 * TOL["atol"]

    panel.heads.setValue(5)  # does not divide d_model 32: said, nothing reopened
    qtbot.mouseClick(panel.apply_heads, Qt.MouseButton.LeftButton)
    assert "choose one of 1, 2, 4, 8, 16, 32" in panel.heads_hint.text() and not window.controller.queue.busy
    panel.heads.setValue(4)
    with qtbot.waitSignal(window.state.modelChanged, timeout=20000):
        qtbot.mouseClick(panel.apply_heads, Qt.MouseButton.LeftButton)
    loaded = window.state.model
    assert loaded.model.config.nheads == 4 and loaded.path == tmp_path / "weights.pth"
    assert "heads: 4 (set by you" in panel.summary.text() and not panel.heads_row.isHidden()
    got = run_inference(loaded.model, image, ["a", "b", "c"], input_tensor=x)
    _compare((got.probs, got.boxes_cxcywh, got.cross_attention),
             (expected.probs, expected.boxes_cxcywh, expected.cross_attention))
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.result.num_heads == 4, timeout=20000)
    window.controller.wait(10000)


def test_dilation_beside_a_resnet_backbone_config_is_ignored_as_transformers_does(tmp_path):
    """transformers dilates only through its backbone config (``output_stride``): ``dilation=True``
    beside a transformers ResNet config runs undilated there, so it opens undilated here."""
    hf = _hf_model(dilation=True)
    hf.save_pretrained(tmp_path / "m")
    ckpt = load_checkpoint(tmp_path / "m")
    assert not ckpt.model_config.dilation
    _compare(_our_forward(ckpt.build_model(), _images()), _hf_forward(hf, _images()))
