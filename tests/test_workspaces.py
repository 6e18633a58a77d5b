"""Issue 29: the window organised by workspaces that fit a laptop and a projector.

At 1024x700, 1280x720, 1366x768 and 1920x1080 (and at a device pixel ratio of 2), every panel
of every workspace, brought to the front, needs no sideways scrolling and lies inside the
window; from 1366x768 up none scrolls down either (the training settings form, its own inner
scroll area, is the one allowed to); the image view keeps at least 45% of the window's height
where it is shown. Each workspace remembers its own layout; Reset Layout resets the current
one. And the numbered defects that concern the window as a whole (2, 5, 7, 12)."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shown_window
from fit import problems, rect_in_window, survey
from PySide6.QtWidgets import QMessageBox, QTabBar, QToolBar

from detr_core.config import TrainConfig
from detr_core.train.trainer import History
from explorer.file_commands import BUNDLED_CHECKPOINT
from explorer.main_window import MainWindow
from explorer.workspaces import IMAGE_SHARE, WORKSPACES

SIZES = {"1024x700": (1024, 700), "1280x720": (1280, 720), "1366x768": (1366, 768), "1920x1080": (1920, 1080)}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def surveyed(qapp, tmp_path_factory):
    """One window, built once, surveyed at every size (a window per size would cost a minute)."""
    from PySide6.QtCore import QSettings

    folder = tmp_path_factory.mktemp("workspaces")
    settings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, runs_folder=folder)
    window.show()
    from pytestqt.qtbot import QtBot

    bot = QtBot(None)
    bot.waitUntil(lambda: window.state.result is not None, timeout=30000)
    window.build_views()
    window.lesson.panel  # noqa: B018 - built: its pages are panels too
    window.specialization.num_images.setValue(8)  # its twenty titled squares are charts to check too
    assert window.specialization.run()
    bot.waitUntil(lambda: not window.specialization.job.is_running, timeout=30000)
    results = {}
    for name, (w, h) in SIZES.items():
        window.resize(w, h)
        bot.wait(60)
        results[name] = survey(window, lambda: bot.wait(25))
    yield window, results
    window.controller.wait(10000)
    window.close()


@pytest.mark.parametrize("name", list(SIZES))
def test_every_panel_of_every_workspace_fits(surveyed, name):
    _, results = surveyed
    w, h = SIZES[name]
    found = problems(results[name], strict_height=w >= 1366 and h >= 768)
    assert not found, f"at {name}:\n" + "\n".join(found)


def test_every_workspace_shows_the_image_only_where_it_is_the_subject(surveyed):
    window, results = surveyed
    for workspace in WORKSPACES:
        window.workspaces.show(workspace.key)
        assert window.canvas.isVisible() == workspace.image, workspace.key
    shares = {r["workspace"]: r["image"] for r in results["1366x768"]}
    assert {k for k, v in shares.items() if v is not None} == {"explore", "train", "analyse"}


def test_a_device_pixel_ratio_of_2_fits_too():
    """The same survey in a fresh process whose screen has a device pixel ratio of 2 (a laptop's
    2732x1536 panel shown at 1366x768 logical pixels)."""
    script = (
        "import json, sys, tempfile\n"
        "from pathlib import Path\n"
        "from PySide6.QtCore import QSettings\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import time\n"
        "app = QApplication([])\n"
        "from explorer.main_window import MainWindow\n"
        "from fit import survey\n"
        "folder = Path(tempfile.mkdtemp())\n"
        "window = MainWindow(settings=QSettings(str(folder / 's.ini'), QSettings.Format.IniFormat), runs_folder=folder)\n"
        "window.show()\n"
        "def wait(ms):\n"
        "    end = time.monotonic() + ms / 1000\n"
        "    while time.monotonic() < end:\n"
        "        app.processEvents()\n"
        "        time.sleep(0.005)\n"
        "while window.state.result is None:\n"
        "    wait(20)\n"
        "window.build_views()\n"
        "window.lesson.panel\n"
        "window.resize(1366, 768)\n"
        "wait(60)\n"
        "print(json.dumps({'dpr': window.devicePixelRatioF(), 'rows': survey(window, lambda: wait(25))}))\n"
        "window.controller.wait(10000)\n"
        "window.close()\n")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["dpr"] == 2
    found = problems(out["rows"], strict_height=True)
    assert not found, "at 1366x768, device pixel ratio 2:\n" + "\n".join(found)


# --- each workspace's own layout -----------------------------------------------------------------
def test_each_workspace_keeps_its_own_layout_across_switches_and_relaunches(qtbot, settings):
    window = shown_window(qtbot, settings)
    window.workspaces.show("explore")
    window.attention_dock.hide()  # the user's change to Explore
    window.workspaces.show("train")
    assert window.training_dock.isVisible() and not window.queries_dock.isVisible()
    window.workspaces.show("explore")
    assert window.queries_dock.isVisible() and not window.attention_dock.isVisible()
    window.workspaces.show("analyse")
    window.close()
    again = shown_window(qtbot, settings)
    assert again.workspaces.current == "analyse"  # where the user left off
    assert again.workspaces.bar.currentIndex() == 2
    again.workspaces.show("explore")
    assert not again.attention_dock.isVisible()
    again.reset_layout()  # this workspace only
    assert again.attention_dock.isVisible()
    again.controller.wait(10000)


def test_ctrl_number_switches_workspaces_and_the_bar_follows(qtbot, settings):
    window = shown_window(qtbot, settings)
    actions = window.workspaces.actions.actions()
    assert [a.shortcut().toString() for a in actions] == [f"Ctrl+{i}" for i in range(1, 6)]
    actions[3].trigger()
    assert window.workspaces.current == "data" and window.workspaces.bar.currentIndex() == 3
    window.workspaces.bar.setCurrentIndex(1)
    assert window.workspaces.current == "train" and actions[1].isChecked()
    window.controller.wait(10000)


# --- defect 5: the layout does not get stuck ------------------------------------------------------
def test_after_the_lesson_the_image_has_its_share_again_also_after_a_relaunch(qtbot, settings):
    window = shown_window(qtbot, settings)
    window.resize(1366, 768)
    window.workspaces.reset()
    window.lesson.show()
    qtbot.wait(50)
    assert window.workspaces.current == "lesson" and window.lesson.dock.isVisible()
    window.workspaces.show("explore")
    qtbot.wait(50)
    assert window.canvas.height() >= IMAGE_SHARE * window.height()
    window.lesson.show()
    window.close()
    again = shown_window(qtbot, settings)
    again.workspaces.show("explore")  # its layout was saved at 1366x768; the window is now 1000x700
    qtbot.waitUntil(lambda: again.canvas.height() >= IMAGE_SHARE * again.height(), timeout=10000)
    again.controller.wait(10000)


def test_leaving_presentation_mode_gives_the_right_column_its_width_back(qtbot, settings):
    window = shown_window(qtbot, settings)
    window.resize(1366, 768)
    window.workspaces.reset()
    qtbot.wait(50)
    before = window.queries_dock.width()
    window.lesson.act_presentation.setChecked(True)
    qtbot.wait(50)
    window.lesson.act_presentation.setChecked(False)
    window.workspaces.show("explore")
    qtbot.wait(50)
    assert window.queries_dock.width() >= before - 2
    window.controller.wait(10000)


def test_reset_layout_keeps_whole_tab_titles(qtbot, settings):
    window = shown_window(qtbot, settings)
    for key in ("explore", "analyse", "train"):
        window.workspaces.show(key)
        window.reset_layout()
        qtbot.wait(20)
        bars = [b for b in window.findChildren(QTabBar) if b is not window.workspaces.bar and b.isVisible()]
        assert bars, key
        assert all(b.elideMode().name == "ElideNone" for b in bars), key
    window.controller.wait(10000)


# --- defect 2: the way back after Stop stays in a menu ------------------------------------------
def _trained_copy(window):
    """A real model handed back as a run would hand it: a copy of the open one, one step on."""
    from explorer.training_worker import TrainedModel

    loaded = window.state.model
    model = copy.deepcopy(loaded.model)
    return TrainedModel(model, loaded.class_names, model.config, loaded.train_config or TrainConfig(), History(), 1,
                        "stopped")


def test_back_to_lives_in_the_file_menu_and_open_recent_lists_the_bundled_model(qtbot, settings, monkeypatch):
    asked = []  # unsaved trained weights: the question is answered Discard (and noted)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[1]) or QMessageBox.StandardButton.Discard)
    window = shown_window(qtbot, settings, BUNDLED_CHECKPOINT)
    assert not window.act_back.isEnabled()
    names = [a.text() for a in window.files.recent_menu.actions()]
    assert any("toy_shapes.pt" in n for n in names) and window.files.recent_menu.isEnabled()
    bundled = window.state.model
    window.on_trained(_trained_copy(window))
    assert window.state.model is not bundled
    assert window.act_back.isEnabled() and window.act_back.text().replace("&", "") == "Back to toy_shapes.pt"
    window.notice.hide()  # the notice's 15 s are over: the menu still has it
    window.act_back.trigger()
    assert window.state.model is bundled
    assert window.act_back.isEnabled() and "trained in this session" in window.act_back.text()
    window.open_checkpoint(BUNDLED_CHECKPOINT)  # another model: "Back to" no longer applies
    qtbot.waitUntil(lambda: window.state.model is not bundled, timeout=20000)
    assert not window.act_back.isEnabled()
    recent = [a for a in window.files.recent_menu.actions() if "bundled" in a.text()]
    assert len(recent) == 1
    assert asked == ["Unsaved trained weights"]  # once: going back over the unsaved trained weights
    window.controller.wait(10000)


# --- defect 7: presentation mode at a projector's sizes ------------------------------------------
@pytest.mark.parametrize("size", [(1280, 720), (1024, 768)])
def test_presentation_mode_fits_a_projector(qtbot, settings, size):
    window = shown_window(qtbot, settings)
    window.resize(*size)
    window.lesson.act_presentation.setChecked(True)
    qtbot.wait(80)
    assert window.workspaces.current == "lesson"
    assert window.findChild(QToolBar, "workspace_toolbar").isVisible()
    area = window.lesson.dock.widget()
    assert area.horizontalScrollBar().maximum() == 0
    assert window.rect().contains(rect_in_window(window, window.lesson.dock))
    window.workspaces.show("explore")
    # the right column gets its width back once the workspace has settled (a few layout passes:
    # ~200 ms here, longer on a loaded machine), so wait for it rather than a fixed time
    docks = (window.queries_dock, window.attention_dock)
    qtbot.waitUntil(lambda: all(d.widget().horizontalScrollBar().maximum() == 0 for d in docks), timeout=10000)
    assert window.canvas.height() >= IMAGE_SHARE * window.height()
    window.lesson.act_presentation.setChecked(False)
    window.controller.wait(10000)


# --- defect 12: what a newcomer reads and where "Train a deformable model" leads ----------------
def test_quick_start_names_the_workspaces_the_lesson_datasets_and_the_doctor():
    from explorer.help import QUICK_START

    for word in ("Lesson", "Open Dataset", "Doctor", "YOLO", "Train", "Analyse", "Data"):
        assert word in QUICK_START, word


def test_train_a_deformable_model_shows_the_preset_in_the_train_workspace(qtbot, settings):
    window = shown_window(qtbot, settings)
    window.build_views()
    window.workspaces.show("data")
    window.deformable.trainRequested.emit()
    qtbot.wait(50)
    assert window.workspaces.current == "train" and window.training_dock.isVisible()
    panel = window.training
    assert panel.preset.currentText() == "deformable"
    assert panel.preset.visibleRegion().boundingRect().height() >= panel.preset.height() - 1  # in sight
    assert panel.progress_label.text() == "Not training."
    window.controller.wait(10000)


def test_the_survey_sees_a_cut_chart_title(qtbot):
    """The chart check of the survey above can fail: a title wider than its chart is reported."""
    import pyqtgraph as pg
    from fit import clipped_titles
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    panel = QWidget()
    qtbot.addWidget(panel)
    charts = pg.GraphicsLayoutWidget()
    QVBoxLayout(panel).addWidget(charts)
    short = charts.addPlot(title="AP")
    panel.resize(160, 120)
    panel.show()
    qtbot.wait(20)
    assert clipped_titles(panel) == []
    short.setTitle("held-out AP of every decoder layer, with and without NMS, over training steps")
    qtbot.wait(20)
    assert clipped_titles(panel) == ["held-out AP of every decoder layer, with and without NMS, over training steps"]
