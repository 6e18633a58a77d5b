"""The training precision follows what the CPU really has (its flags), not "bf16 is supported"."""

import pytest

from detr_core import presets
from detr_core.precision import PrecisionChoice, choose_precision, read_cpu_flags

# A Skylake-SP server: AVX-512, no native bf16 (oneDNN would emulate it, about 2x slower).
AVX512_ONLY = "fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"
ZEN4 = AVX512_ONLY + " avx512_bf16 avx512_vbmi2"
SAPPHIRE_RAPIDS = AVX512_ONLY + " avx512_bf16 amx_bf16 amx_tile amx_int8"


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


@pytest.mark.parametrize("flags,bf16", [(AVX512_ONLY, False), (ZEN4, True), (SAPPHIRE_RAPIDS, True), ("fpu sse sse2", False)])
def test_choice_follows_the_flags(tmp_path, flags, bf16):
    choice = choose_precision(read_cpu_flags(cpuinfo(tmp_path, flags)))
    assert choice.bf16 is bf16
    assert choice.name == ("bfloat16" if bf16 else "float32")
    assert ("avx512_bf16" in choice.reason) or not bf16
    assert "no native bfloat16" in choice.reason or bf16


def test_unreadable_flags_mean_float32(tmp_path):
    assert read_cpu_flags(tmp_path / "missing") is None
    choice = choose_precision(None)
    assert not choice.bf16 and "could not be read" in choice.reason


def test_arm_features_line_is_read(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert "bf16" in read_cpu_flags(path)
    assert not choose_precision(read_cpu_flags(path)).bf16  # only x86's native bf16 is known to pay


@pytest.mark.parametrize("bf16", [False, True])
def test_presets_follow_the_detection(monkeypatch, bf16):
    monkeypatch.setattr(presets, "cpu_precision", lambda: PrecisionChoice(bf16, "substituted"))
    for name in ("fast", "vanilla"):
        assert presets.preset(name)[1].bf16 is bf16
    _, train = presets.apply_overrides(*presets.preset("fast"), [f"bf16={'off' if bf16 else 'on'}"])
    assert train.bf16 is (not bf16)  # --set bf16=... still overrides


def test_the_note_says_which_precision_runs_and_why(monkeypatch):
    from detr_core import precision

    monkeypatch.setattr(precision, "cpu_precision", lambda: precision.choose_precision({"avx512f"}))
    assert precision.precision_note(False).startswith("precision: float32: the CPU has no native bfloat16")
    note = precision.precision_note(True)
    assert "bfloat16 autocast, set by hand (bf16=on)" in note and "float32" in note


def test_the_training_panel_shows_the_precision(qtbot):
    from detr_core.precision import precision_note
    from explorer.training_panel import TrainingPanel

    panel = TrainingPanel()
    qtbot.addWidget(panel)
    assert panel.precision_label.text() == precision_note(panel.bf16.isChecked())
    panel.bf16.setChecked(not panel.bf16.isChecked())
    assert panel.precision_label.text() == precision_note(panel.bf16.isChecked())
    assert "set by hand" in panel.precision_label.text()
