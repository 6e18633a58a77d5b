"""YOLO (Ultralytics) txt datasets: a hand-made folder read to the pixel, the toy export against
the COCO one, bad lines named by file and line, training, evaluation and the doctor through
main.py, and the window opening the folder and its data.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detr_core.data.dataset import DatasetError
from detr_core.data.export import write_toy_dataset
from detr_core.data.sources import detect_format, open_dataset, parse_source
from detr_core.data.yolo import label_path
from detr_core.doctor.data_checks import check_dataset

SMALL = ["--set", "d_model=32", "--set", "dim_feedforward=64", "--set", "num_encoder_layers=1",
         "--set", "num_decoder_layers=2", "--set", "tiny_width=8", "--set", "batch_size=2",
         "--set", "scales=64,80", "--set", "max_size=128", "--set", "bf16=off", "--threads", "2", "--quiet"]


def write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path)


@pytest.fixture
def hand_made(tmp_path: Path) -> Path:
    """Ultralytics' layout with names as a dict, a polygon line, an image without a label file
    and one with an empty file."""
    root = tmp_path / "shapes"
    root.mkdir()
    (root / "data.yaml").write_text("path: .  # the dataset root\ntrain: images/train\nval: images/val\n"
                                    "nc: 2\nnames:\n  0: cat\n  1: dog\n")
    write_image(root / "images/train/a.jpg", 100, 50)
    write_image(root / "images/train/b.png", 40, 80)
    write_image(root / "images/train/c.jpg", 30, 30)
    write_image(root / "images/val/d.jpg", 64, 64)
    (root / "labels/train").mkdir(parents=True)
    (root / "labels/val").mkdir(parents=True)
    (root / "labels/train/a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.2 0.2 0.2\n")
    # a polygon (segment label): its bounding box; b.png has no label file
    (root / "labels/train/c.txt").write_text("")
    (root / "labels/val/d.txt").write_text("0 0.25 0.25 0.75 0.25 0.75 0.5 0.25 0.5\n")
    return root


def test_a_hand_made_folder_reads_to_the_pixel(hand_made: Path) -> None:
    assert detect_format(hand_made) == "yolo" and parse_source(str(hand_made)) == ("yolo", hand_made)
    train = open_dataset(f"yolo:{hand_made}")
    assert train.class_names == ["cat", "dog"] and train.category_ids == [0, 1] and train.problems == []
    assert [r.path.name for r in train.records] == ["a.jpg", "b.png", "c.jpg"]
    a, b, c = train.records
    assert (a.width, a.height) == (100, 50) and a.labels.tolist() == [1, 0]
    # 1: cx 50, cy 25, w 20, h 20 px -> (40, 15, 60, 35); 0: cx 10, cy 10, w 20, h 10 -> (0, 5, 20, 15)
    np.testing.assert_allclose(a.boxes_xyxy, [[40, 15, 60, 35], [0, 5, 20, 15]], atol=1e-4)
    assert len(b.labels) == 0 and len(c.labels) == 0  # no label file; an empty one
    val = open_dataset(str(hand_made / "data.yaml"), role="val")  # the .yaml itself, detected as YOLO
    np.testing.assert_allclose(val.records[0].boxes_xyxy, [[16, 16, 48, 32]], atol=1e-4)
    # the model's target: cxcywh normalised to the image
    _, target = train.item(0)
    np.testing.assert_allclose(target["boxes"].numpy(), [[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.2, 0.2]], atol=1e-6)
    assert label_path(hand_made / "images/train/a.jpg") == hand_made / "labels/train/a.txt"
    # a split given as a .txt list of images (relative to the list), names from nc alone
    (hand_made / "some.txt").write_text("./images/train/a.jpg\nimages/val/d.jpg\n")
    (hand_made / "data.yaml").write_text("train: images/train\ntest: some.txt\nnc: 2\n")
    listed = open_dataset(f"yolo:{hand_made}", split="test")
    assert [r.path.name for r in listed.records] == ["a.jpg", "d.jpg"] and listed.class_names == ["class0", "class1"]


def test_names_as_a_list_and_roboflow_paths(tmp_path: Path) -> None:
    root = tmp_path / "rf"  # Roboflow's export: train/images, and "../train/images" in data.yaml
    root.mkdir()
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 1\nnames: ['ball']\n")
    for split in ("train", "valid"):
        write_image(root / split / "images" / "x.jpg", 20, 10)
        (root / split / "labels").mkdir()
        (root / split / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    for role in ("train", "val"):
        data = open_dataset(f"yolo:{root}", role=role)
        assert data.class_names == ["ball"]
        np.testing.assert_allclose(data.records[0].boxes_xyxy, [[5, 2.5, 15, 7.5]])


def test_bad_input_is_named_by_file_and_line(hand_made: Path, tmp_path: Path) -> None:
    labels = hand_made / "labels/train"
    (labels / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2\n")  # four numbers on line 2
    (labels / "b.txt").write_text("dog 0.5 0.5 0.2 0.2\n")
    (labels / "c.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")  # class 7 of 2
    data = open_dataset(f"yolo:{hand_made}")
    text = "\n".join(data.skipped)
    assert f"{labels / 'a.txt'} line 2: 4 numbers" in text and "image a.jpg left out" in text
    assert f"{labels / 'b.txt'} line 1: not numbers" in text
    assert f"{labels / 'c.txt'} line 2: class id 7, but data.yaml names 2 classes" in text
    assert [r.path.name for r in data.records] == ["c.jpg"] and data.records[0].labels.tolist() == [0]

    (labels / "c.txt").write_text("0 0.5 nan 0.2 0.2\n")  # nothing usable left: one clear error
    with pytest.raises(DatasetError, match=r"no usable images \(.*a\.txt line 2"):
        open_dataset(f"yolo:{hand_made}")
    with pytest.raises(DatasetError, match="nowhere: no such folder"):
        open_dataset(f"yolo:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match="no split 'test'"):
        open_dataset(f"yolo:{hand_made}", split="test")
    (hand_made / "data.yaml").write_text("train: images/train\nval: images/nowhere\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match="images/nowhere: no such folder"):
        open_dataset(f"yolo:{hand_made}", role="val")
    (hand_made / "labels" / "empty").mkdir()
    (hand_made / "data.yaml").write_text("train: images/train\nval: labels/empty\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match="split 'val' has no images"):
        check_dataset(f"yolo:{hand_made}", split="val")  # the doctor does not call an empty split healthy
    (hand_made / "data.yaml").write_text("train: images/train\nnc: 3\nnames: [cat, dog]\n")
    with pytest.raises(DatasetError, match="nc is 3 but names lists 2"):
        open_dataset(f"yolo:{hand_made}")
    (hand_made / "data.yaml").write_text("train: [images/train\n")
    with pytest.raises(DatasetError, match="data.yaml: not valid YAML"):
        open_dataset(f"yolo:{hand_made}")
    (hand_made / "data.yaml").unlink()
    with pytest.raises(DatasetError, match="no data.yaml.*write a data.yaml"):
        open_dataset(f"yolo:{hand_made}")


def test_the_toy_export_reads_as_the_coco_export(tmp_path: Path) -> None:
    yolo = write_toy_dataset(tmp_path / "yolo", train=6, val=3, fmt="yolo")
    coco = write_toy_dataset(tmp_path / "coco", train=6, val=3, fmt="coco")
    for role in ("train", "val"):
        a, b = open_dataset(f"yolo:{yolo}", role=role), open_dataset(f"coco:{coco}", role=role)
        assert a.class_names == b.class_names and len(a) == len(b) and not a.problems
        for i, (ra, rb) in enumerate(zip(a.records, b.records)):
            assert ra.labels.tolist() == rb.labels.tolist()
            np.testing.assert_allclose(ra.boxes_xyxy, rb.boxes_xyxy, atol=1e-3)  # 6 decimals of 128 px
            assert np.array_equal(a.sample(i).image, b.sample(i).image)
        gt = a.coco_ground_truth()
        assert len(gt.getAnnIds()) == sum(len(r.labels) for r in a.records)


def test_make_dataset_train_eval_and_doctor_through_main(tmp_path: Path, run_cli) -> None:
    root = tmp_path / "toy-yolo"
    r = run_cli("make-dataset", root, "--format", "yolo", "--train", 6, "--val", 4)
    assert r.returncode == 0 and f"--data yolo:{root}" in r.stdout, r.stderr
    ckpt = tmp_path / "yolo.pt"
    r = run_cli("train", "--data", f"yolo:{root}", "--steps", 2, "--out", ckpt, *SMALL)
    assert r.returncode == 0 and "saved" in r.stdout, r.stderr
    r = run_cli("eval", ckpt, "--data", f"yolo:{root}", "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics["images"] == 4 and {"AP", "AP50", "AP/triangle"} <= metrics.keys()

    r = run_cli("doctor", "--data", f"yolo:{root}", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["findings"] == [], r.stdout
    for txt in (root / "labels" / "train").glob("*.txt"):  # pixels written where fractions belong
        rows = [line.split() for line in txt.read_text().splitlines()]
        txt.write_text("".join(f"{c} " + " ".join(f"{float(v) * 128:.1f}" for v in rest) + "\n" for c, *rest in rows))
    r = run_cli("doctor", "--data", f"yolo:{root}", "--json")
    found = json.loads(r.stdout)["findings"]
    assert [f["key"] for f in found] == ["box_pixels"] and found[0]["images"] == 6, r.stdout
    skipped = open_dataset(f"yolo:{root}").skipped  # the loader's note says what the doctor says
    assert len(skipped) == found[0]["objects"] and "pixels, not fractions of the image?" in skipped[0]


def test_the_window_opens_a_yolo_folder_and_its_data_yaml(qtbot, tmp_path: Path, no_blocking_questions) -> None:
    """Dropping data.yaml (or the folder) opens the dataset in the browser with its boxes; the
    doctor tab checks it and shows an example of pixel boxes as declared."""
    from PySide6.QtCore import QSettings

    from explorer.dataset_session import looks_like_dataset, source_for_path
    from explorer.main_window import BUNDLED_CHECKPOINT, MainWindow

    root = write_toy_dataset(tmp_path / "shapes", train=3, val=3, fmt="yolo")
    assert looks_like_dataset(root / "data.yaml") and source_for_path(root) == f"yolo:{root}"
    w = MainWindow(settings=QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat),
                   checkpoint=BUNDLED_CHECKPOINT, runs_folder=tmp_path / "runs")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.state.result is not None, timeout=20000)
    try:
        with qtbot.waitSignal(w.state.datasetChanged, timeout=20000):
            w.open_path(root / "data.yaml")  # what dropping the file does
        qtbot.waitUntil(lambda: bool(w.datasets.errors), timeout=20000)
        opened = w.state.dataset
        assert opened.source == f"yolo:{root / 'data.yaml'}" and opened.name == "shapes"
        assert set(opened.splits) == {"train", "val"} and w.datasets.table.rowCount() == 3
        browser = w.datasets
        browser.select_index(1)
        assert browser.gt_title.text().startswith(f"Ground truth: {len(browser.dataset.records[1].labels)} objects")

        for txt in (root / "labels" / "train").glob("*.txt"):  # pixels where fractions belong
            rows = [line.split() for line in txt.read_text().splitlines()]
            txt.write_text("".join(f"{c} " + " ".join(f"{float(v) * 128:g}" for v in rest) + "\n" for c, *rest in rows))
        doctor = w.doctor
        with qtbot.waitSignal(doctor.jobFinished, timeout=20000):
            assert doctor.check(opened.source)
        assert [f.key for f in doctor.report.findings] == ["box_pixels"]
        example = doctor.report.findings[0].examples[0]
        doctor.open_example(str(example))
        assert "objects as declared" in doctor.verdicts.text()
    finally:
        w.datasets.cancel_job()
        w.datasets.wait_job(10000)
        w.doctor.cancel_job()
        w.doctor.wait_job(10000)
        w.controller.wait(10000)
