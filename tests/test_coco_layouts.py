"""COCO folders in the layouts people have (COCO 2017's, a Roboflow export, images with one .json),
each written for real in a temporary folder and opened by the core, the CLI (train, eval, doctor)
and the window's File > Open Dataset; and the error that lists the layouts when none matches."""

import json
from pathlib import Path

import pytest
from PIL import Image

CLASSES = ["cat", "dog"]
SMALL = ["--set", "d_model=32", "--set", "dim_feedforward=64", "--set", "num_encoder_layers=1",
         "--set", "num_decoder_layers=2", "--set", "tiny_width=8", "--set", "batch_size=2",
         "--set", "scales=64", "--set", "max_size=80", "--set", "bf16=off", "--threads", "2", "--quiet"]


def write_split(images: Path, annotations: Path, n: int, first_id: int = 1) -> None:
    """``n`` 64x48 images in ``images`` and their COCO JSON at ``annotations`` (one box each)."""
    images.mkdir(parents=True, exist_ok=True)
    annotations.parent.mkdir(parents=True, exist_ok=True)
    entries, anns = [], []
    for k in range(n):
        i = first_id + k
        name = f"img_{i:04d}.jpg"
        Image.new("RGB", (64, 48), (40 * k % 255, 90, 160)).save(images / name)
        entries.append({"id": i, "file_name": name, "width": 64, "height": 48})
        anns.append({"id": i, "image_id": i, "category_id": 1 + k % 2, "bbox": [8, 6, 30, 20], "area": 600,
                     "iscrowd": 0})
    cats = [{"id": c + 1, "name": name, "supercategory": "animal"} for c, name in enumerate(CLASSES)]
    annotations.write_text(json.dumps({"images": entries, "annotations": anns, "categories": cats}))


def coco2017(root: Path) -> Path:
    write_split(root / "train2017", root / "annotations" / "instances_train2017.json", 4)
    write_split(root / "val2017", root / "annotations" / "instances_val2017.json", 2, 5)
    return root


def roboflow(root: Path) -> Path:
    for split, n, first in (("train", 4, 1), ("valid", 2, 5), ("test", 3, 7)):
        write_split(root / split, root / split / "_annotations.coco.json", n, first)
    return root


def one_json(root: Path) -> Path:
    write_split(root, root / "labels.json", 3)
    return root


LAYOUTS = {"coco2017": (coco2017, "COCO 2017, splits train2017, val2017", "COCO train2017", "COCO val2017"),
           "roboflow": (roboflow, "Roboflow export, splits train, valid, test", "COCO train", "COCO valid"),
           "one_json": (one_json, "images + one JSON, split labels", "COCO labels", "COCO labels")}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_core_opens_each_layout(tmp_path, layout):
    from detr_core.data.sources import describe_source, open_dataset

    make, described, train_name, val_name = LAYOUTS[layout]
    root = make(tmp_path / layout)
    assert describe_source(f"coco:{root}") == described
    train, val = open_dataset(f"coco:{root}", role="train"), open_dataset(f"coco:{root}", role="val")
    assert (train.name, val.name) == (train_name, val_name)
    assert train.class_names == CLASSES and not train.problems and not val.problems
    assert len(open_dataset(str(root))) == len(train)  # a bare folder is found as COCO too


def test_roboflow_named_splits(tmp_path):
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import open_dataset

    root = roboflow(tmp_path / "rf")
    assert open_dataset(f"coco:{root}", "test").name == "COCO test" and len(open_dataset(f"coco:{root}", "test")) == 3
    assert open_dataset(f"coco:{root}", "val").name == "COCO valid"  # "val" answers for Roboflow's "valid"
    with pytest.raises(DatasetError, match="has splits: train, valid, test"):
        open_dataset(f"coco:{root}", "val2017")


def test_no_layout_lists_the_known_ones(tmp_path):
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import open_dataset

    folder = tmp_path / "mixed"
    write_split(folder, folder / "a.json", 1)
    (folder / "b.json").write_text((folder / "a.json").read_text())  # two files: which one is meant?
    for source in (f"coco:{folder}", str(folder)):
        with pytest.raises(DatasetError) as e:
            open_dataset(source)
        msg = str(e.value)
        assert "COCO 2017" in msg and "Roboflow export" in msg and "one COCO .json" in msg, msg
        assert "coco:IMAGES,ANNOTATIONS.json" in msg, msg
    with pytest.raises(DatasetError, match=r"it holds 2 \.json files: name one"):
        open_dataset(f"coco:{folder}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_doctor_reads_each_layout(tmp_path, layout, run_cli):
    make, described, train_name, _ = LAYOUTS[layout]
    root = make(tmp_path / layout)
    r = run_cli("doctor", "--data", f"coco:{root}", "--json")
    assert r.returncode == 0, r.stderr
    assert f"layout: {described}" in r.stderr
    report = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert report["name"] == train_name and report["images"] == (3 if layout == "one_json" else 4)
    assert report["objects"] == report["images"]


def test_cli_trains_and_evaluates_on_each_layout(tmp_path, run_cli):
    rf = roboflow(tmp_path / "rf")
    ckpt = tmp_path / "rf.pt"
    r = run_cli("train", "--data", f"coco:{rf}", "--steps", 1, "--out", ckpt, *SMALL)
    assert r.returncode == 0 and "saved" in r.stdout, r.stderr
    assert "layout: Roboflow export, splits train, valid, test" in r.stderr
    for make, described, _, val_name in LAYOUTS.values():
        root = make(tmp_path / f"eval-{make.__name__}")
        r = run_cli("eval", ckpt, "--data", f"coco:{root}", "--json")
        assert r.returncode == 0, r.stderr
        assert f"layout: {described}" in r.stderr
        assert json.loads(r.stdout.strip().splitlines()[-1])["images"] == (3 if make is one_json else 2)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_window_opens_each_layout(tmp_path, layout):
    from explorer.dataset_session import looks_like_dataset, open_path

    make, described, train_name, val_name = LAYOUTS[layout]
    root = make(tmp_path / layout)
    assert looks_like_dataset(root)
    opened = open_path(root)
    assert opened.layout == described and opened.summary.startswith(f"layout: {described}")
    if layout == "one_json":  # one split, as an opened annotation file: nothing to hold out for training
        assert list(opened.splits) == ["val"] and not opened.can_train
        assert opened.source == f"coco:{root},{root / 'labels.json'}"
    else:
        assert opened.splits["train"].name == train_name and opened.splits["val"].name == val_name
        assert opened.can_train and not opened.failed


def test_window_file_open_dataset_says_the_layout(qtbot, tmp_path, no_blocking_questions):
    """File > Open Dataset on a Roboflow export: both splits open and the notice names the layout."""
    from PySide6.QtCore import QSettings

    from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

    root = roboflow(tmp_path / "rf")
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=20000)
    with qtbot.waitSignal(w.state.datasetChanged, timeout=20000):
        assert w.open_dataset(root)
    assert set(w.state.dataset.splits) == {"train", "val"} and w.state.dataset.splits["val"].name == "COCO valid"
    qtbot.waitUntil(lambda: "its layout: Roboflow export, splits train, valid, test" in w.notice.text, timeout=20000)
    if w.views_built:
        w.datasets.cancel_job()
        w.datasets.wait_job(10000)
    w.controller.wait(10000)


def test_coco_layout_defaults_never_swap_splits(tmp_path):
    """instances_train.json / instances_val.json (no year) are the train and val splits; a folder
    with only a val split does not train on it."""
    from detr_core.data.dataset import DatasetError
    from detr_core.data.sources import open_dataset

    root = tmp_path / "plain"
    write_split(root / "train", root / "annotations" / "instances_train.json", 3)
    write_split(root / "val", root / "annotations" / "instances_val.json", 2, 4)
    assert [open_dataset(f"coco:{root}", role=r).name for r in ("train", "val")] == ["COCO train", "COCO val"]
    only_val = tmp_path / "only-val"
    write_split(only_val / "val2017", only_val / "annotations" / "instances_val2017.json", 2)
    assert open_dataset(f"coco:{only_val}", role="val").name == "COCO val2017"
    with pytest.raises(DatasetError, match="instances_train2017.json: no such file; .* has splits: val2017"):
        open_dataset(f"coco:{only_val}", role="train")
    rf = tmp_path / "rf-no-train"
    write_split(rf / "valid", rf / "valid" / "_annotations.coco.json", 2)
    with pytest.raises(DatasetError, match="has splits: valid"):
        open_dataset(f"coco:{rf}", role="train")
