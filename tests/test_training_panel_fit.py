"""The training panel's one table of settings (issue 29): a preset shown in the panel and read
back is the preset; a table row without its widget fails when the panel is made."""

from __future__ import annotations

import dataclasses

import pytest

from detr_core.presets import preset


def _flat(config: object, prefix: str = "") -> dict[str, object]:
    """Every field of a (nested) config dataclass, by dotted name."""
    out: dict[str, object] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = value
    return out


@pytest.fixture
def panel(qtbot):
    from explorer.training_panel import TrainingPanel

    p = TrainingPanel()
    qtbot.addWidget(p)
    return p


@pytest.mark.parametrize("name", ["fast", "vanilla", "deformable"])
def test_a_preset_shown_in_the_panel_reads_back_as_the_preset(panel, name):
    from explorer.training_panel import SETTINGS

    panel.preset.setCurrentText(name)
    model, train = panel.configs()
    want_model, want_train = preset(name)
    # the panel's own fields (a preset does not set them) are what its widgets say
    own = {row.field: row.from_widget(panel._widget(row).value()) for row in SETTINGS if row.to_widget is None}
    assert own == {"eval_every": 200}
    want_train = dataclasses.replace(want_train, **own)
    assert _flat(model) == _flat(want_model)
    assert _flat(train) == _flat(want_train)


def test_derived_fields_follow_d_model(panel):
    panel.d_model.setCurrentText("128")
    model, _ = panel.configs()
    assert (model.d_model, model.dim_feedforward, model.nheads) == (128, 512, 4)


def test_fine_tuning_loads_and_reads_the_fine_tuning_recipe(panel, monkeypatch):
    from detr_core.train.finetune import finetune_train_config

    monkeypatch.setattr(type(panel), "fine_tuning", property(lambda self: True))
    panel.load_preset("vanilla")
    _, train = panel.configs()
    recipe = finetune_train_config()
    assert (train.lr, train.lr_backbone, train.batch_size) == (recipe.lr, recipe.lr_backbone, recipe.batch_size)
    assert train.steps == 0 and train.max_seconds == preset("vanilla")[1].max_seconds  # the panel's minutes


def test_a_setting_without_its_widget_fails_when_the_panel_is_made(qtbot, monkeypatch):
    from explorer import training_panel

    broken = (*training_panel.SETTINGS, training_panel.Setting("num_classes", "classes"))
    monkeypatch.setattr(training_panel, "SETTINGS", broken)
    with pytest.raises(LookupError, match="no widget 'classes'"):
        training_panel.TrainingPanel()


def test_a_setting_the_configs_do_not_have_fails_when_the_panel_is_made(qtbot, monkeypatch):
    from explorer import training_panel

    broken = (*training_panel.SETTINGS, training_panel.Setting("num_querys", "queries"))
    monkeypatch.setattr(training_panel, "SETTINGS", broken)
    with pytest.raises(LookupError, match="num_querys"):
        training_panel.TrainingPanel()


def test_the_data_line_names_every_format_a_dataset_can_be_opened_in():
    """Defect 12: the panel's data line listed COCO and VOC, not YOLO."""
    from explorer.dataset_training import describe

    line = describe(None, None)
    assert all(name in line for name in ("COCO", "VOC", "YOLO")), line
