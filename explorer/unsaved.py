"""The one question asked before trained weights that were never saved are let go of: Save,
Discard or Cancel. Asked by the controller's guard before another model replaces them (whatever
replaces them: a checkpoint opened from the menu, a recent file, a drop or a Hugging Face
folder, "Back to", a new training run) and by the window before it quits."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from .state import LoadedModel

TITLE = "Unsaved trained weights"


def ask_to_save(parent: QWidget, text: str, save: Callable[[], bool], title: str = TITLE) -> bool:
    """Ask ``text`` with Save / Discard / Cancel. True to go on: saved (``save()`` returned
    True) or discarded; False when cancelled or when saving did not happen (a file dialog
    closed without a name, a write that failed and said why)."""
    buttons = QMessageBox.StandardButton
    answer = QMessageBox.question(parent, title, text, buttons.Save | buttons.Discard | buttons.Cancel,
                                  buttons.Save)
    if answer == buttons.Save:
        return save()
    return answer == buttons.Discard


def replace_question(loaded: LoadedModel, replacing: str) -> str:
    """What is asked before ``replacing`` (words: "Opening small.pt") lets go of ``loaded``."""
    return (f"The model trained in this session ({loaded.trained.step if loaded.trained else '?'} steps) "
            f"has not been saved. {replacing} replaces it. Save it first?")


def quit_question() -> str:
    return "The model trained in this session has not been saved. Save it before quitting?"
