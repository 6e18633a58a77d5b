import argparse

import pytest
import torch

from detr_core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    official_config,
    save_checkpoint,
)
from detr_core.config import DETRConfig, TrainConfig
from detr_core.model.detr import DETR


def _model(tiny_config):
    torch.manual_seed(0)
    return DETR(tiny_config)


def test_round_trip_is_exact(tmp_path, tiny_config):
    model = _model(tiny_config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randn(1, 3, 64, 64))["pred_boxes"].sum().backward()
    opt.step()
    history = {"steps": {"step": [1.0], "loss": [2.5]}, "evals": [{"step": 1, "AP": 0.1}]}
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"], opt, history, TrainConfig(lr=3e-4), step=7)
    ckpt = load_checkpoint(path)
    assert ckpt.model_config == tiny_config
    assert ckpt.class_names == ["a", "b", "c"]
    assert ckpt.step == 7 and ckpt.history == history and ckpt.train_config.lr == 3e-4
    restored = ckpt.build_model()
    for (k, v), (k2, v2) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    opt2 = torch.optim.AdamW(restored.parameters(), lr=1e-4)
    opt2.load_state_dict(ckpt.optimizer_state)
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(model(x)["pred_boxes"], restored(x)["pred_boxes"], rtol=0, atol=0)


def test_save_is_atomic(tmp_path, tiny_config, monkeypatch):
    model = _model(tiny_config)
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"])
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, model, ["a", "b", "c"])
    assert path.read_bytes() == before  # the old file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left behind


@pytest.mark.parametrize("damage,message", [
    ("truncate", "corrupt or truncated"),
    ("garbage", "corrupt or truncated"),
    ("empty", "corrupt or truncated"),
])
def test_damaged_files_give_a_clear_error(tmp_path, tiny_config, damage, message):
    path = save_checkpoint(tmp_path / "m.pt", _model(tiny_config), ["a", "b", "c"])
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 100)
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_missing_folder_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)
    torch.save({"something": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a DETR checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a DETR checkpoint"):
        load_checkpoint(tmp_path / "list.pt")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_never_unpickles_arbitrary_objects(tmp_path, capsys):
    torch.save({"format": "detr-explorer-checkpoint", "payload": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "must never run" not in capsys.readouterr().out


def test_incompatible_contents(tmp_path, tiny_config):
    path = save_checkpoint(tmp_path / "m.pt", _model(tiny_config), ["a", "b", "c"])
    raw = torch.load(path, weights_only=True)
    raw["format_version"] = 99
    torch.save(raw, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(tmp_path / "new.pt")
    raw["format_version"] = 1
    raw["model_config"]["warp_drive"] = True
    torch.save(raw, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError, match="warp_drive"):
        load_checkpoint(tmp_path / "odd.pt")
    raw = torch.load(path, weights_only=True)
    del raw["model"]["class_embed.weight"]
    torch.save(raw, tmp_path / "short.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_model(tmp_path / "short.pt")


def test_official_format_loads_with_its_config(tmp_path):
    """A file laid out like facebookresearch/detr's (model + argparse Namespace) loads; its config
    is read off the weight shapes."""
    cfg = DETRConfig(backbone="resnet50", pretrained_backbone=False, num_encoder_layers=2, num_decoder_layers=3,
                     num_queries=10, num_classes=91)
    model = DETR(cfg)
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(nheads=8, dilation=False)}, tmp_path / "detr.pth")
    ckpt = load_checkpoint(tmp_path / "detr.pth")
    assert ckpt.source == "facebookresearch/detr"
    assert (ckpt.model_config.backbone, ckpt.model_config.num_encoder_layers, ckpt.model_config.num_decoder_layers,
            ckpt.model_config.num_queries, ckpt.model_config.num_classes) == ("resnet50", 2, 3, 10, 91)
    assert ckpt.class_names[1] == "person" and len(ckpt.class_names) == 91
    restored = ckpt.build_model()
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    torch.testing.assert_close(model(x)["pred_logits"], restored(x)["pred_logits"])
    assert official_config(model.state_dict()).d_model == 256


NEWER_SETTINGS = ("decoder_norm_between_layers", "image_height", "image_width")  # unknown to earlier versions


def test_a_checkpoint_leaves_out_settings_at_their_default_so_an_older_version_opens_it(tmp_path, tiny_config):
    """An older explorer knows fewer settings and refuses a file naming one it does not know: a file
    that uses none of the newer settings opens there (what is left out takes the same defaults); one
    that does use one names it, and the older version refuses it by name."""
    import dataclasses
    import json
    from pathlib import Path

    from detr_core.config import config_from_dict, to_dict

    older = dataclasses.make_dataclass("DETRConfig", [(f.name, f.type, f) for f in dataclasses.fields(DETRConfig)
                                                      if f.name not in NEWER_SETTINGS])
    train = TrainConfig(steps=7, loss=dataclasses.replace(TrainConfig().loss, cost_bbox=3.0))
    path = save_checkpoint(tmp_path / "m.pt", _model(tiny_config), ["a", "b", "c"], train_config=train)
    raw = torch.load(path, weights_only=True)
    assert not set(NEWER_SETTINGS) & set(raw["model_config"])
    assert raw["train_config"] == {"steps": 7, "data": {}, "dataset": {}, "loss": {"cost_bbox": 3.0}}
    assert to_dict(config_from_dict(older, raw["model_config"])) == {
        k: v for k, v in to_dict(tiny_config).items() if k not in NEWER_SETTINGS}
    loaded = load_checkpoint(path)
    assert loaded.model_config == tiny_config and loaded.train_config == train

    stretched = dataclasses.replace(tiny_config, image_height=96, image_width=128)
    raw = torch.load(save_checkpoint(tmp_path / "s.pt", _model(stretched), ["a", "b", "c"]), weights_only=True)
    assert (raw["model_config"]["image_height"], raw["model_config"]["image_width"]) == (96, 128)
    with pytest.raises(ValueError, match="image_height, image_width"):
        config_from_dict(older, raw["model_config"])
    assert load_checkpoint(tmp_path / "s.pt").model_config.fixed_input_size == (96, 128)

    # a default that changed would reopen such files with the new value: they are pinned
    pinned = json.loads((Path(__file__).parent / "data" / "config_defaults.json").read_text())
    for cls in (DETRConfig, TrainConfig):
        current, before = to_dict(cls()), pinned[cls.__name__]
        changed = sorted(k for k in current if k in before and current[k] != before[k])
        assert not changed, f"{cls.__name__} defaults changed: {changed}; checkpoints leave defaults out, so " \
                            "older files would reopen with the new values (bump FORMAT_VERSION and map them)"
        new = sorted(set(current) - set(before))
        assert not new, f"{cls.__name__}: add the new setting(s) {new} with their defaults to config_defaults.json"
