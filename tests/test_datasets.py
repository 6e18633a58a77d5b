"""Datasets behind one interface: toy, COCO and VOC folders, augmentation, evaluation, fine-tuning
and every kind of bad input (a message naming the file; the usable rest still opens)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from detr_core.analysis.evaluate import coco_metrics, evaluate_model
from detr_core.analysis.label_map import label_map_for
from detr_core.analysis.voc_map import voc_map50
from detr_core.checkpoint import Checkpoint
from detr_core.config import DatasetConfig, DETRConfig
from detr_core.data.coco import open_coco
from detr_core.data.dataset import DatasetError, DetectionDataset
from detr_core.data.export import write_toy_dataset
from detr_core.data.sources import open_dataset, training_datasets
from detr_core.data.stream import AugmentedStream, batches
from detr_core.data.toy import HELDOUT_SEED, ToyShapes
from detr_core.data.transforms import RandomSizeCrop, _Pipeline, eval_transform, train_transform
from detr_core.data.voc import VOC_CLASSES, open_voc
from detr_core.presets import apply_overrides, preset
from detr_core.train.finetune import freeze, init_from_checkpoint
from detr_core.train.trainer import Trainer


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    write_toy_dataset(root / "coco", 6, 4, "coco", seed=3)
    write_toy_dataset(root / "voc", 6, 4, "voc", seed=3)
    return root


def copy_of(folders: Path, name: str, tmp_path: Path) -> Path:
    shutil.copytree(folders / name, tmp_path / name)
    return tmp_path / name


# --- loading and class mapping -----------------------------------------------------------------
@pytest.mark.parametrize("source", ["coco:{}/coco", "voc:{}/voc", "{}/coco", "{}/voc/VOCdevkit/VOC2007"])
def test_folders_hold_the_toy_images_and_boxes(folders, source):
    train = open_dataset(source.format(folders), role="train")
    val = open_dataset(source.format(folders), role="val")
    assert isinstance(train, DetectionDataset) and (len(train), len(val)) == (6, 4)
    assert train.class_names == ["rectangle", "ellipse", "triangle"] and not train.problems
    for data, toy in ((train, ToyShapes(seed=3)), (val, ToyShapes(seed=HELDOUT_SEED, split="heldout"))):
        for i in range(len(data)):
            got, want = data.sample(i), toy.sample(i)
            np.testing.assert_array_equal(got.labels, want.labels)
            np.testing.assert_array_equal(got.boxes_xyxy, want.boxes_xyxy)  # VOC's 1-based boxes round-trip
            assert np.abs(got.image.astype(int) - want.image).mean() < 2  # JPEG quality 98


def test_coco_category_ids_map_to_contiguous_labels(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    Image.new("RGB", (40, 30)).save(images / "a.png")
    Image.new("RGB", (40, 30)).save(images / "empty.png")
    ann = {
        "images": [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 11, "file_name": "empty.png", "width": 40, "height": 30}],
        "categories": [{"id": 11, "name": "zebra"}, {"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1, 2, 10, 5], "area": 50, "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 11, "bbox": [20, 2, 10, 5], "area": 50, "iscrowd": 0},
            {"id": 3, "image_id": 10, "category_id": 3, "bbox": [0, 10, 30, 20], "area": 600, "iscrowd": 1},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    data = open_dataset(f"coco:{images},{tmp_path / 'ann.json'}")
    assert data.class_names == ["cat", "dog", "zebra"] and data.category_ids == [3, 7, 11]
    smp = data.sample(0)
    assert smp.image_id == 10 and smp.labels.tolist() == [1, 2]  # the crowd is not a target
    np.testing.assert_array_equal(smp.boxes_xyxy, [[1, 2, 11, 7], [20, 2, 30, 7]])
    assert smp.ignored_labels.tolist() == [0]
    assert len(data.sample(1).labels) == 0 and len(data) == 2  # no annotations: a valid negative
    # evaluation: perfect boxes score 1; a detection on the crowd region is neither right nor wrong
    perfect = {"labels": torch.tensor([1, 2, 0]), "boxes": torch.tensor([[1., 2, 11, 7], [20, 2, 30, 7], [0, 10, 30, 30]]),
               "scores": torch.tensor([0.9, 0.8, 0.7])}
    empty = {k: v[:0] for k, v in perfect.items()}
    metrics = coco_metrics(data, [10, 11], [perfect, empty])
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP/dog"] == pytest.approx(1.0)
    assert data.coco_ground_truth().anns[3]["iscrowd"] == 1


def test_voc_difficult_objects_are_neither_targets_nor_errors(folders, tmp_path):
    root = copy_of(folders, "voc", tmp_path)
    year = root / "VOCdevkit" / "VOC2007"
    xml = year / "Annotations" / "val_000000.xml"
    tree = ET.parse(xml)
    first = tree.getroot().find("object")
    first.find("difficult").text = "1"
    tree.write(xml)
    data = open_voc(root, "val")
    full = open_voc(folders / "voc", "val")
    assert len(data.sample(0).labels) == len(full.sample(0).labels) - 1
    assert data.sample(0).ignored_xyxy.tolist() == full.sample(0).boxes_xyxy[:1].tolist()
    ids = [r.image_id for r in data.records]
    perfect = [{"labels": torch.as_tensor(r.labels), "boxes": torch.as_tensor(r.boxes_xyxy),
                "scores": torch.linspace(0.9, 0.5, len(r.labels))} for r in data.records]
    assert voc_map50(data, ids, perfect) == pytest.approx(1.0)
    # a confident detection on the difficult object changes nothing
    hard = data.records[0]
    perfect[0] = {"labels": torch.cat([torch.as_tensor(hard.ignored_labels), perfect[0]["labels"]]),
                  "boxes": torch.cat([torch.as_tensor(hard.ignored_xyxy), perfect[0]["boxes"]]),
                  "scores": torch.cat([torch.tensor([0.99]), perfect[0]["scores"]])}
    assert voc_map50(data, ids, perfect) == pytest.approx(1.0)
    assert coco_metrics(data, ids, perfect)["AP50"] == pytest.approx(1.0)


def test_voc_without_class_file_has_the_20_classes(folders, tmp_path):
    root = copy_of(folders, "voc", tmp_path)
    year = root / "VOCdevkit" / "VOC2007"
    (year / "class_names.txt").unlink()
    xml = year / "Annotations" / "train_000000.xml"
    text = xml.read_text()
    for shape, animal in (("rectangle", "dog"), ("ellipse", "dog"), ("triangle", "cat")):
        text = text.replace(f"<name>{shape}</name>", f"<name>{animal}</name>")
    xml.write_text(text)
    data = open_voc(root, "train")
    assert data.class_names == list(VOC_CLASSES) and len(data) == 6  # shapes left out, images kept
    assert any("train_000000" not in m and "unknown class 'rectangle'" in m for m in data.skipped)
    assert len(data.sample(0).labels) > 0 and all(len(data.sample(i).labels) == 0 for i in range(1, 6))
    assert set(data.sample(0).labels.tolist()) <= {VOC_CLASSES.index("dog"), VOC_CLASSES.index("cat")}


# --- augmentation -------------------------------------------------------------------------------
def drawn(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (120, 160)) -> torch.Tensor:
    image = torch.zeros(3, *size, dtype=torch.uint8)
    image[:, y0:y1, x0:x1] = 255
    return image


def visible_box(image: torch.Tensor) -> list[float] | None:
    ys, xs = torch.nonzero(image[0] > 127, as_tuple=True)
    if len(ys) == 0:
        return None
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_flip_and_crop_move_the_box_with_the_shape():
    image, box, label = drawn(20, 30, 70, 90), torch.tensor([[20., 30, 70, 90]]), torch.tensor([1])
    out, boxes, _ = _Pipeline(v2.RandomHorizontalFlip(p=1.0))(image, box, label)
    assert boxes.tolist() == [visible_box(out)] == [[90, 30, 140, 90]]
    torch.manual_seed(0)
    out, boxes, _ = _Pipeline(v2.Compose([RandomSizeCrop(40, 100), v2.ClampBoundingBoxes()]))(image, box, label)
    assert boxes.tolist() == [visible_box(out)]


@pytest.mark.parametrize("augment", ["reference", "light"])
@pytest.mark.parametrize("seed", range(8))
def test_training_augmentation_keeps_boxes_on_their_shapes(seed, augment):
    config = DatasetConfig(scales=(64, 80, 96), max_size=160, crop_resize=(70, 90), crop_min=40, crop_max=90,
                           augment=augment)
    image, box, label = drawn(30, 20, 100, 70), torch.tensor([[30., 20, 100, 70]]), torch.tensor([2])
    torch.manual_seed(seed)
    out, boxes, labels = train_transform(config)(image, box, label)
    assert min(out.shape[-2:]) in config.scales or max(out.shape[-2:]) == config.max_size
    if augment == "light":  # the flip only, at the size the model infers at
        assert min(out.shape[-2:]) == max(config.scales)
    seen = visible_box(out)
    if seen is None or (seen[2] - seen[0]) * (seen[3] - seen[1]) < 4:
        assert len(boxes) <= 1  # cropped away (SanitizeBoundingBoxes) or a sliver
        return
    assert labels.tolist() == [2]
    assert np.allclose(boxes[0].tolist(), seen, atol=1.5), (boxes, seen)


def test_eval_transform_resizes_as_the_model_infers(folders):
    data = open_dataset(f"coco:{folders}/coco", role="val").with_transform(eval_transform(96, 200))
    images, targets = data.batch(range(2))
    assert images.tensors.shape[-2:] == (96, 96) and not images.mask.any()
    assert targets[0]["orig_size"].tolist() == [128, 128]
    torch.testing.assert_close(targets[0]["boxes"], ToyShapes(seed=HELDOUT_SEED, split="heldout")[0][1]["boxes"])


# --- the training stream ------------------------------------------------------------------------
def test_stream_is_a_pure_function_of_seed_and_position(folders):
    base = open_dataset(f"coco:{folders}/coco").with_transform(train_transform(DatasetConfig(augment="reference")))
    a, b = AugmentedStream(base, seed=1), AugmentedStream(base, seed=1)
    xa, ta = a.batch(range(4, 9))
    xb, tb = b.batch(range(4, 9))
    torch.testing.assert_close(xa.tensors, xb.tensors)
    assert all(torch.equal(p["boxes"], q["boxes"]) for p, q in zip(ta, tb))
    assert sorted(a.index_of(p) for p in range(6)) == list(range(6))  # an epoch shows each image once
    assert [a.index_of(p) for p in range(6)] != [a.index_of(p) for p in range(6, 12)]  # reshuffled
    assert not torch.equal(AugmentedStream(base, seed=2).batch(range(4, 9))[0].tensors[0], xa.tensors[0])
    # worker processes build the very same batches
    here = batches(a, 3, start_step=1, num_workers=0)
    there = batches(b, 3, start_step=1, num_workers=1)
    for _ in range(2):
        (x0, t0), (x1, t1) = next(here), next(there)
        torch.testing.assert_close(x0.tensors, x1.tensors)
        assert all(torch.equal(p["boxes"], q["boxes"]) for p, q in zip(t0, t1))
    there.close()


def small(source: str, **train) -> tuple[DETRConfig, object]:
    model, cfg = preset("fast")
    return apply_overrides(model, cfg, {
        "d_model": 32, "dim_feedforward": 64, "num_encoder_layers": 1, "num_decoder_layers": 2, "tiny_width": 8,
        "batch_size": 2, "steps": 2, "max_seconds": None, "bf16": False, "warmup_steps": 0, "eval_images": 4,
        "dataset.source": source, "image_min_size": 128, **train,
    })


@pytest.mark.usefixtures("one_thread")
def test_training_and_evaluation_on_a_coco_folder(folders):
    model_cfg, train_cfg = small(f"coco:{folders}/coco", eval_every=2)
    trainer = Trainer(model_cfg, train_cfg)
    events = list(trainer.events())
    assert type(events[-1]).__name__ == "FinishedEvent" and events[-1].reason == "completed"
    metrics = events[-2].metrics
    assert metrics["images"] == 4 and {"AP", "AP50", "AP_small", "AP/ellipse"} <= metrics.keys()
    assert trainer.class_names == ["rectangle", "ellipse", "triangle"]
    voc = open_dataset(f"voc:{folders}/voc", role="val").with_transform(eval_transform(128, 256))
    assert "mAP50_voc" in evaluate_model(trainer.model, voc, 2)


def test_toy_default_is_still_the_generator():
    model_cfg, train_cfg = small("toy")
    stream, heldout = training_datasets(train_cfg, model_cfg)
    assert isinstance(stream, ToyShapes) and stream.seed == train_cfg.seed and isinstance(heldout, ToyShapes)


# --- fine-tuning --------------------------------------------------------------------------------
def test_finetuning_reinitializes_the_class_head_only(tiny_config):
    from detr_core.model.detr import DETR

    torch.manual_seed(0)
    source = DETR(tiny_config)
    ckpt = Checkpoint(tiny_config, ["a", "b", "c"], source.state_dict())
    config = DETRConfig(**{**tiny_config.__dict__, "num_classes": 5})
    model, notes = init_from_checkpoint(ckpt, config)
    assert any("class head re-initialized (3 -> 5" in n for n in notes)
    own = model.state_dict()
    changed = sorted(k for k, v in source.state_dict().items() if own[k].shape != v.shape or not torch.equal(own[k], v))
    assert changed == ["class_embed.bias", "class_embed.weight"]
    assert model.num_queries == tiny_config.num_queries
    assert freeze(model, "transformer") > 0
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("transformer."))
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("backbone."))
    assert label_map_for(["N/A", "cat", "dog"], ["dog", "cat"]) == [-1, 1, 0]
    with pytest.raises(ValueError, match="zebra"):
        label_map_for(["cat"], ["cat", "zebra"])


# --- bad input ----------------------------------------------------------------------------------
def coco_with(tmp_path: Path, folders: Path, change) -> Path:
    root = copy_of(folders, "coco", tmp_path)
    path = root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    change(data, root)
    path.write_text(json.dumps(data))
    return root


def test_malformed_json_says_where(folders, tmp_path):
    root = copy_of(folders, "coco", tmp_path)
    path = root / "annotations" / "instances_train2017.json"
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DatasetError, match=r"instances_train2017.json: not valid JSON \(line 2, column 12"):
        open_dataset(f"coco:{root}")
    path.write_text("[1, 2]")
    with pytest.raises(DatasetError, match="not a COCO annotation file"):
        open_dataset(f"coco:{root}")


def _bad_annotations(data: dict, root: Path) -> None:
    def add(**fields) -> None:
        data["annotations"].append({"id": 100 + len(data["annotations"]), "image_id": 2, "category_id": 1,
                                    "bbox": [10, 10, 20, 20], "iscrowd": 0, **fields})

    add(image_id=999)  # names a missing image
    add(category_id=42)  # unknown category
    add(bbox=[10, 10, 0, 5])  # zero width
    add(bbox=[10, 10, -4, 5])  # negative width
    add(bbox=[500, 500, 10, 10])  # outside the image
    add(bbox=[100, 100, 50, 50])  # extends past the 128x128 image: clipped
    data["images"].append({"id": 1, "file_name": "copy.jpg", "width": 128, "height": 128})  # duplicate id
    data["images"][2]["file_name"] = "gone.jpg"  # missing file
    (root / "train2017" / data["images"][3]["file_name"]).write_bytes(b"not a jpeg at all")  # unreadable


def test_bad_coco_entries_are_left_out_with_reasons(folders, tmp_path):
    root = coco_with(tmp_path, folders, _bad_annotations)
    data = open_dataset(f"coco:{root}")
    text = "\n".join(data.skipped)
    for needle in ("names image 999, which the file does not list", "unknown category id 42",
                   "zero or negative size", "is outside the image", "extends past the 128x128 image; clipped",
                   "image id 1 is used by 2 images", "gone.jpg: no such file", "not an image format"):
        assert needle in text, needle
    assert all("instances_train2017.json" in m or "train2017/" in m for m in data.skipped)
    assert len(data) == 6 - 3  # duplicate id, missing file, unreadable file
    assert max(b.max() for b in (r.boxes_xyxy for r in data.records) if b.size) <= 128
    summary = data.summary()
    assert "3 images" in summary and "unknown category: 1" in summary
    data.batch(range(len(data)))  # the rest loads


def test_an_image_that_breaks_after_opening_is_skipped_in_batches(folders, tmp_path):
    root = copy_of(folders, "coco", tmp_path)
    data = open_dataset(f"coco:{root}")
    data.records[1].path.write_bytes(data.records[1].path.read_bytes()[:200])  # truncated after the header
    _, targets = data.batch(range(3))
    assert len(targets) == 2 and "unreadable image" in data.skipped[-1]


def test_bad_voc_files_are_named(folders, tmp_path):
    root = copy_of(folders, "voc", tmp_path)
    year = root / "VOCdevkit" / "VOC2007"
    (year / "Annotations" / "train_000001.xml").write_text("<annotation><object></annotation>")
    (year / "Annotations" / "train_000002.xml").unlink()
    (year / "JPEGImages" / "train_000003.jpg").unlink()
    xml = year / "Annotations" / "train_000004.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>unicorn", 1))
    data = open_voc(root, "train")
    text = "\n".join(data.skipped)
    assert "VOC2007/Annotations/train_000001.xml: not valid XML (line 1" in text
    assert "train_000002.xml: no such file" in text and "train_000003.jpg: no such file" in text
    assert "unknown class 'unicorn" in text
    assert len(data) == 3
    with pytest.raises(DatasetError, match="test.txt: no such split file"):
        open_voc(root, "test")


def test_folders_that_are_no_dataset(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DatasetError, match="neither a COCO folder .* nor a VOC devkit"):
        open_dataset(str(tmp_path / "pictures"))
    with pytest.raises(DatasetError, match="not a COCO folder"):
        open_dataset(f"coco:{tmp_path / 'pictures'}")
    with pytest.raises(DatasetError, match="not a VOC devkit"):
        open_dataset(f"voc:{tmp_path / 'pictures'}")
    with pytest.raises(DatasetError, match="no such folder"):
        open_dataset(str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="unknown dataset format 'kitti'"):
        open_dataset("kitti:/x")
    with pytest.raises(DatasetError, match="not a YOLO dataset"):
        open_dataset(f"yolo:{tmp_path / 'pictures'}")


def test_a_dataset_with_nothing_usable_says_so(folders, tmp_path):
    def all_missing(data: dict, root: Path) -> None:
        for img in data["images"]:
            img["file_name"] = "missing-" + img["file_name"]

    root = coco_with(tmp_path, folders, all_missing)
    with pytest.raises(DatasetError, match="no usable images .*missing-000000000001.jpg: no such file"):
        open_coco(root / "train2017", root / "annotations" / "instances_train2017.json")
