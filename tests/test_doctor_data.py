"""The data doctor: one small broken dataset per cause, each giving its own finding and only it;
the healthy toy export gives none."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from detr_core.data.export import write_toy_dataset
from detr_core.doctor.data_checks import check_dataset

ANN = Path("annotations/instances_train2017.json")


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "coco", train=30, val=2)


@pytest.fixture(scope="module")
def healthy_voc(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toyvoc") / "voc", train=30, val=2, fmt="voc")


@pytest.fixture(scope="module")
def healthy_yolo(tmp_path_factory) -> Path:
    return write_toy_dataset(tmp_path_factory.mktemp("toyyolo") / "yolo", train=30, val=2, fmt="yolo")


def broken(healthy: Path, tmp_path: Path, edit) -> Path:
    """A copy of the healthy COCO export with ``edit(data, root)`` applied to its train annotations."""
    root = tmp_path / "broken"
    shutil.copytree(healthy, root)
    data = json.loads((root / ANN).read_text())
    edit(data, root)
    (root / ANN).write_text(json.dumps(data))
    return root


def keys(root: Path, **kw) -> list[str]:
    return [f.key for f in check_dataset(f"coco:{root}", **kw).findings]


def test_healthy_exports_give_no_findings(healthy: Path, healthy_voc: Path, healthy_yolo: Path) -> None:
    report = check_dataset(f"coco:{healthy}")
    assert report.findings == [], report.text()
    assert report.images == 30 and report.objects > 60
    assert check_dataset(f"voc:{healthy_voc}").findings == []
    yolo = check_dataset(f"yolo:{healthy_yolo}")
    assert yolo.findings == [] and (yolo.images, yolo.objects) == (report.images, report.objects), yolo.text()
    assert check_dataset("toy", toy_images=60).findings == []


def _xyxy(data, root):
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        a["bbox"] = [x, y, x + w, y + h]


def _normalised(data, root):
    size = {i["id"]: (i["width"], i["height"]) for i in data["images"]}
    for a in data["annotations"]:
        w, h = size[a["image_id"]]
        x, y, bw, bh = a["bbox"]
        a["bbox"] = [x / w, y / h, bw / w, bh / h]


def _shifted(data, root):
    for a in data["annotations"]:
        a["category_id"] += 1


def _empty_category(data, root):
    data["categories"].append({"id": 4, "name": "hexagon"})


def _tiny(data, root):
    for a in data["annotations"][::3]:
        a["bbox"] = [a["bbox"][0], a["bbox"][1], 6.0, 6.0]


def _crowded(data, root):
    img = dict(data["images"][0], id=999)
    data["images"].append(img)
    for k in range(25):  # a 5x5 grid of 24 px boxes, no overlap, classes in turn
        x, y = 2 + 25 * (k % 5), 2 + 25 * (k // 5)
        data["annotations"].append({"id": 10_000 + k, "image_id": 999, "category_id": 1 + k % 3, "iscrowd": 0,
                                    "bbox": [x, y, 24.0, 24.0], "area": 576.0})


def _unreadable(data, root):
    for img in data["images"][:2]:
        (root / "train2017" / img["file_name"]).write_bytes(b"not a jpeg")


def _duplicates(data, root):
    extra = [dict(a, id=20_000 + a["id"]) for a in data["annotations"][:6]]
    data["annotations"].extend(extra)


def _outside(data, root):
    for a in data["annotations"][:4]:
        a["bbox"] = [a["bbox"][0] + 200, a["bbox"][1], a["bbox"][2], a["bbox"][3]]


def _imbalance(data, root):
    keep = [a for a in data["annotations"] if a["category_id"] != 3]
    rare = [a for a in data["annotations"] if a["category_id"] == 3][:3]
    data["annotations"] = keep + rare


def _zero_area(data, root):
    for a in data["annotations"][:3]:
        a["bbox"][2] = 0.0


@pytest.mark.parametrize("edit, key", [
    (_xyxy, "box_format"), (_normalised, "box_units"), (_shifted, "class_ids_shifted"),
    (_empty_category, "empty_category"), (_tiny, "tiny_objects"), (_crowded, "too_many_objects"),
    (_unreadable, "unreadable_images"), (_duplicates, "duplicate_boxes"), (_outside, "outside_image"),
    (_imbalance, "class_imbalance"), (_zero_area, "zero_area"),
])
def test_each_cause_gives_its_own_finding_and_only_it(healthy: Path, tmp_path: Path, edit, key: str) -> None:
    root = broken(healthy, tmp_path, edit)
    report = check_dataset(f"coco:{root}")
    assert [f.key for f in report.findings] == [key], report.text()
    f = report.findings[0]
    assert f.fix and f.cause and (f.examples or key == "empty_category")
    assert all(str(e) in report.paths for e in f.examples)


def test_voc_boxes_written_as_xywh(healthy_voc: Path, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    shutil.copytree(healthy_voc, root)
    for xml in (root / "VOC2007" / "Annotations").glob("*.xml"):
        tree = ET.parse(xml)
        for box in tree.getroot().iter("bndbox"):
            x0, y0 = int(box.findtext("xmin")), int(box.findtext("ymin"))
            box.find("xmax").text = str(int(box.findtext("xmax")) - x0)  # width where xmax belongs
            box.find("ymax").text = str(int(box.findtext("ymax")) - y0)
        tree.write(xml)
    assert [f.key for f in check_dataset(f"voc:{root}").findings] == ["box_format"]


def _yolo_pixels(rows, size):  # "class cx cy w h" in pixels, the numbers a COCO-minded tool writes
    return [[c, x * size[0], y * size[1], w * size[0], h * size[1]] for c, x, y, w, h in rows]


def _yolo_shifted(rows, size):
    return [[c + 1, *rest] for c, *rest in rows]


def _yolo_tiny(rows, size):
    return [[c, x, y, 0.04, 0.04] if k % 3 == 0 else [c, x, y, w, h] for k, (c, x, y, w, h) in enumerate(rows)]


def _yolo_outside(rows, size):
    return [[c, x + 1.5, y, w, h] if k == 0 else [c, x, y, w, h] for k, (c, x, y, w, h) in enumerate(rows)]


def _yolo_duplicates(rows, size):
    return rows + rows[:1]


def _yolo_unreadable(root: Path) -> None:
    for jpg in sorted((root / "images" / "train").glob("*.jpg"))[:2]:
        jpg.write_bytes(b"not a jpeg")


def _yolo_empty_category(root: Path) -> None:
    yaml = root / "data.yaml"
    yaml.write_text(yaml.read_text().replace("nc: 3", "nc: 4") + '  3: "hexagon"\n')


def _yolo_crowded(root: Path) -> None:  # a 5x5 grid of 24 px boxes, no overlap, classes in turn
    (root / "labels" / "train" / "train_000000.txt").write_text("".join(
        f"{k % 3} {(14 + 25 * (k % 5)) / 128:.6f} {(14 + 25 * (k // 5)) / 128:.6f} 0.1875 0.1875\n" for k in range(25)))


@pytest.mark.parametrize("edit, key", [
    (_yolo_pixels, "box_pixels"), (_yolo_shifted, "class_ids_shifted"), (_yolo_tiny, "tiny_objects"),
    (_yolo_outside, "outside_image"), (_yolo_duplicates, "duplicate_boxes"), (_yolo_unreadable, "unreadable_images"),
    (_yolo_empty_category, "empty_category"), (_yolo_crowded, "too_many_objects"),
])
def test_yolo_causes_give_their_own_finding(healthy_yolo: Path, tmp_path: Path, edit, key: str) -> None:
    """YOLO declares normalised boxes: pixels written there are one finding (not also 'outside the
    image'), and the other checks read the boxes in pixels of the measured image."""
    root = tmp_path / "yolo"
    shutil.copytree(healthy_yolo, root)
    if edit.__code__.co_argcount == 1:  # an edit of the folder
        edit(root)
    else:  # an edit of every label file's rows
        for txt in sorted((root / "labels" / "train").glob("*.txt")):
            rows = [[int(f[0]), *map(float, f[1:])] for f in (line.split() for line in txt.read_text().splitlines())]
            txt.write_text("".join(" ".join(f"{v:g}" for v in row) + "\n" for row in edit(rows, (128, 128))))
    report = check_dataset(f"yolo:{root}")
    assert [f.key for f in report.findings] == [key], report.text()
    f = report.findings[0]
    assert f.fix and f.cause and (f.examples or key == "empty_category")
    assert all(str(e) in report.paths for e in f.examples)
    if key == "box_pixels":
        assert f.title == "Boxes are in pixels, normalised [0, 1] expected" and f.images == 30
        assert "divide" in f.fix
    if key == "class_ids_shifted":
        assert "class id" in f.fix


def test_model_limits(healthy: Path) -> None:
    assert "too_many_objects" in keys(healthy, num_queries=3)
    assert keys(healthy, num_classes=2) == ["beyond_model_classes"]


def test_doctor_command(healthy: Path, tmp_path: Path, capsys) -> None:
    from main import main

    root = broken(healthy, tmp_path, _shifted)
    assert main(["doctor", "--data", f"coco:{root}", "--json", "--report", str(tmp_path / "r.md")]) == 0
    out = capsys.readouterr().out
    found = json.loads(out[: out.rindex("}") + 1])
    assert [f["key"] for f in found["findings"]] == ["class_ids_shifted"]
    assert "## Data" in (tmp_path / "r.md").read_text() and "Class ids shifted by +1" in (tmp_path / "r.md").read_text()
    assert main(["doctor", "--data", f"coco:{tmp_path / 'nowhere'}"]) == 1
    assert "error:" in capsys.readouterr().err
