"""The window's settings (pytest-qt, offscreen): a damaged settings file never stops the app from
starting (each bad value falls back to its default, with a line in the log naming it), and two
windows on one settings file keep each other's recent files."""

import logging
import math
import os

import pytest
from conftest import shown_window
from PySide6.QtCore import QByteArray, QRect, QSettings

from explorer.main_window import BUNDLED_CHECKPOINT
from explorer.settings import RecentFiles, read_setting

pytestmark = pytest.mark.usefixtures("no_blocking_questions")

# every key the window, the lesson and the dataset browser read, each with a value it cannot use
DAMAGED = """[General]
threshold=abc
opacity=1e3
colormap=no such map
maximized=sometimes
hintDismissed=perhaps
presentationMode=2
windowRect=abc
workspace=nowhere
recentFiles=@Rect(1 2 3 4)
lastImageDir=one, two
lastDatasetDir=@Rect(0 0 1 1)
lastCheckpointDir=@Size(3 4)

[datasetBrowser]
view=grid

[workspaces]
explore=abc
"""


def _open(qtbot, settings, checkpoint=BUNDLED_CHECKPOINT):
    return shown_window(qtbot, settings, checkpoint)


def _settings_file(tmp_path, text, name="settings.ini"):
    path = tmp_path / name
    path.write_text(text)
    return QSettings(str(path), QSettings.Format.IniFormat)


# --- 2. a damaged setting falls back to its default ---------------------------------------------
def test_a_damaged_settings_file_starts_the_app_with_defaults_and_says_which_values(qtbot, tmp_path, caplog):
    settings = _settings_file(tmp_path, DAMAGED)
    with caplog.at_level(logging.WARNING, logger="explorer.settings"):
        window = _open(qtbot, settings, checkpoint=None)
        window.build_views()  # the dataset browser reads its own key
        dirs = (window.recent_files(), read_setting(settings, "lastImageDir", "home"),
                read_setting(settings, "lastDatasetDir", "home"), read_setting(settings, "lastCheckpointDir", "home"))
    assert window.state.threshold == 0.5 and window.queries.threshold_slider.value() == 50
    assert window.state.heatmap_style.opacity == 0.55 and window.state.heatmap_style.colormap == "inferno"
    assert window.hint.isVisibleTo(window) and not window.isMaximized()
    assert not window.lesson.act_presentation.isChecked()
    assert window.datasets.list_button.isChecked()
    assert dirs == ([], "home", "home", "home")
    logged = [r.getMessage() for r in caplog.records if r.name == "explorer.settings"]
    for key, value in (("threshold", "abc"), ("opacity", "1e3"), ("colormap", "no such map"),
                       ("maximized", "sometimes"), ("hintDismissed", "perhaps"), ("presentationMode", "2"),
                       ("windowRect", "abc"), ("workspace", "nowhere"), ("workspaces/explore", "abc"), ("recentFiles", "PySide6.QtCore.QRect(1, 2, 3, 4)"),
                       ("lastImageDir", "['one', 'two']"), ("datasetBrowser/view", "grid")):
        lines = [line for line in logged if line.startswith(f"Settings: {key}={value} ")]
        assert lines, f"no log line names {key}={value}: {logged}"
        assert "\n" not in lines[0]
    window.controller.wait(10000)


def test_a_threshold_of_nan_falls_back_and_the_boxes_are_drawn(qtbot, tmp_path, caplog):
    if not BUNDLED_CHECKPOINT.exists():
        pytest.fail("checkpoints/toy_shapes.pt is missing")
    settings = _settings_file(tmp_path, "[General]\nthreshold=nan\nopacity=abc\n")
    with caplog.at_level(logging.WARNING, logger="explorer.settings"):
        window = _open(qtbot, settings)
    assert window.state.threshold == 0.5 and window.queries.threshold_label.text() == "0.50"
    assert window.state.heatmap_style.opacity == 0.55
    assert any(r.isVisible() for r in window.canvas.rects)  # the trained model's boxes are drawn
    assert any("threshold=nan" in r.getMessage() for r in caplog.records)
    window.controller.wait(10000)


def test_good_settings_are_read_back_as_they_were_saved(qtbot, settings):
    window = _open(qtbot, settings, checkpoint=None)
    window.state.set_threshold(0.3)
    window.state.set_heatmap_style(colormap="viridis", opacity=0.7)
    window.close()
    again = _open(qtbot, QSettings(settings.fileName(), QSettings.Format.IniFormat), checkpoint=None)
    assert again.state.threshold == 0.3
    assert (again.state.heatmap_style.colormap, again.state.heatmap_style.opacity) == ("viridis", 0.7)
    again.controller.wait(10000)


@pytest.mark.parametrize(("stored", "default", "kind", "expected"), [
    ("0.25", 0.5, None, 0.25), ("nan", 0.5, None, 0.5), ("inf", 0.5, None, 0.5), ("abc", 0.5, None, 0.5),
    ("55", 1, None, 55), ("55.0", 1, None, 55), ("55.5", 1, None, 1), ("1e3", 1, None, 1000),
    ("true", False, None, True), ("0", True, None, False), ("yes", False, None, False),
    ("/a/folder", "home", None, "/a/folder"), (["a", "b"], "home", None, "home"),
    ("only", [], None, ["only"]), (["a", "b"], [], None, ["a", "b"]), (QRect(1, 2, 3, 4), [], None, []),
    (QRect(1, 2, 3, 4), None, QRect, QRect(1, 2, 3, 4)), ("abc", None, QRect, None),
    (QByteArray(b"x"), None, QByteArray, QByteArray(b"x")),
])
def test_read_setting_converts_or_falls_back(tmp_path, stored, default, kind, expected):
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    settings.setValue("key", stored)
    settings.sync()
    again = QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)
    value = read_setting(again, "key", default, kind=kind)
    assert value == expected and type(value) is type(expected)
    assert read_setting(again, "missing", default, kind=kind) == default
    assert not (isinstance(value, float) and math.isnan(value))


# --- 7. two windows on one settings folder keep each other's recent files -----------------------
def test_two_windows_on_one_settings_file_keep_both_recent_files(qtbot, tmp_path):
    """Two app instances each have their own cache of the settings file. (QSettings objects of
    one path in one process share a cache; a second path to the file, a symlink, gives the second
    window a cache of its own, as a second instance has.)"""
    store = tmp_path / "settings.ini"
    store.write_text("[General]\nrecentFiles=/earlier/run.pt\n")
    os.symlink(store, tmp_path / "same_settings.ini")
    first = _open(qtbot, QSettings(str(store), QSettings.Format.IniFormat), checkpoint=None)
    second = _open(qtbot, QSettings(str(tmp_path / "same_settings.ini"), QSettings.Format.IniFormat),
                   checkpoint=None)
    images = []
    for window, name in ((first, "first.png"), (second, "second.png")):
        path = tmp_path / name
        window.canvas.grab().save(str(path), "PNG")
        with qtbot.waitSignal(window.state.resultChanged, timeout=20000):
            window.open_image(path)
        images.append(str(path))
    first.close()
    second.close()
    stored = QSettings(str(store), QSettings.Format.IniFormat).value("recentFiles")
    assert stored == [images[1], images[0], "/earlier/run.pt"]  # the last to close first, none lost
    assert second.recent_files() == stored


def test_recent_files_merge_own_newest_first_without_duplicates_and_capped(tmp_path):
    store = tmp_path / "settings.ini"
    os.symlink(store, tmp_path / "link.ini")
    mine, theirs = (RecentFiles(QSettings(str(p), QSettings.Format.IniFormat), limit=4)
                    for p in (store, tmp_path / "link.ini"))
    theirs.add("/t1")
    theirs.add("/t2")
    mine.add("/m1")
    assert mine.add("/t1") == ["/t1", "/m1", "/t2"]
    assert theirs.add("/t3") == ["/t3", "/t2", "/t1", "/m1"]
    assert mine.store() == ["/t1", "/m1", "/t3", "/t2"]
