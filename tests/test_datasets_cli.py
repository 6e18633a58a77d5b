"""The dataset path through main.py: make-dataset, train --data, eval --data, predict --coco-results,
fine-tuning with --init, and bad datasets (one clear line, no traceback). The commands run
through ``main.main`` in this process (the ``run_cli`` fixture)."""

import json
from pathlib import Path

import pytest
from conftest import call_main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "d_model=32", "--set", "dim_feedforward=64", "--set", "num_encoder_layers=1",
         "--set", "num_decoder_layers=2", "--set", "tiny_width=8", "--set", "batch_size=2",
         "--set", "scales=64,80", "--set", "max_size=128", "--set", "bf16=off", "--threads", "2", "--quiet"]


def one_line_error(r, needle):
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.fixture(scope="module")
def toy_folders(tmp_path_factory):
    from detr_core.data.export import write_toy_dataset

    root = tmp_path_factory.mktemp("cli-data")  # make-dataset in this process (the same code, no torch import)
    code = call_main("make-dataset", root / "coco", "--train", 6, "--val", 4)
    assert code == 0 and (root / "coco" / "annotations" / "instances_val2017.json").is_file()
    write_toy_dataset(root / "voc", 6, 4, "voc")
    return root


def test_train_eval_predict_on_folders(toy_folders, tmp_path, run_cli):
    from pycocotools.coco import COCO

    ckpt = tmp_path / "coco.pt"
    r = run_cli("train", "--data", f"coco:{toy_folders / 'coco'}", "--steps", 2, "--out", ckpt, *SMALL)
    assert r.returncode == 0 and "saved" in r.stdout, r.stderr
    r = run_cli("eval", ckpt, "--data", f"voc:{toy_folders / 'voc'}", "--json")
    assert r.returncode == 0, r.stderr
    metrics = json.loads(r.stdout.strip().splitlines()[-1])
    assert metrics["images"] == 4 and {"AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "mAP50_voc",
                                       "AP/triangle"} <= metrics.keys()
    results = tmp_path / "results.json"
    r = run_cli("predict", ckpt, toy_folders / "coco" / "val2017", "--coco-results", results)
    assert r.returncode == 0 and "wrote 80 detections of 4 images" in r.stdout, r.stderr  # 20 queries each
    gt = COCO(str(toy_folders / "coco" / "annotations" / "instances_val2017.json"))
    dt = gt.loadRes(str(results))
    assert set(dt.getImgIds()) == set(gt.getImgIds()) and set(dt.getCatIds()) <= set(gt.getCatIds())


def test_finetune_onto_another_class_count(toy_folders, tmp_path, run_cli):
    # a COCO folder with two of the three classes, made from the toy one
    two = tmp_path / "two"
    (two / "annotations").mkdir(parents=True)
    (two / "val2017").symlink_to(toy_folders / "coco" / "val2017")
    (two / "train2017").symlink_to(toy_folders / "coco" / "train2017")
    for split in ("train2017", "val2017"):
        data = json.loads((toy_folders / "coco" / "annotations" / f"instances_{split}.json").read_text())
        data["categories"] = data["categories"][:2]
        data["annotations"] = [a for a in data["annotations"] if a["category_id"] <= 2]
        (two / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    from detr_core.checkpoint import load_checkpoint, save_checkpoint
    from detr_core.model.detr import DETR
    from detr_core.presets import apply_overrides, preset

    config, _ = apply_overrides(*preset("fast"), {"d_model": 32, "dim_feedforward": 64, "num_encoder_layers": 1,
                                                  "num_decoder_layers": 2, "tiny_width": 8})
    base = save_checkpoint(tmp_path / "base.pt", DETR(config), ["rectangle", "ellipse", "triangle"])
    tuned = tmp_path / "tuned.pt"
    r = run_cli("train", "--data", f"coco:{two}", "--init", base, "--freeze", "backbone", "--steps", 2, "--out", tuned,
            *SMALL[-3:], "--set", "batch_size=2")
    assert r.returncode == 0, r.stderr
    assert "class head re-initialized (3 -> 2 classes)" in r.stdout and "backbone frozen" in r.stdout
    ckpt = load_checkpoint(tuned)
    assert ckpt.class_names == ["rectangle", "ellipse"] and ckpt.model_config.num_queries == 20
    assert ckpt.extra["category_ids"] == [1, 2] and ckpt.train_config.lr_backbone == 1e-5


def test_make_dataset_refuses_to_overwrite(toy_folders, run_cli):
    one_line_error(run_cli("make-dataset", toy_folders / "coco"), "already exists")


def test_bad_datasets_give_one_clear_line(tmp_path, run_cli):
    (tmp_path / "pictures").mkdir()
    broken = tmp_path / "broken"
    (broken / "annotations").mkdir(parents=True)
    (broken / "annotations" / "instances_train2017.json").write_text('{"images": [}')
    r = run_cli("train", "--data", tmp_path / "pictures", "--steps", 1, "--quiet")
    one_line_error(r, "neither a COCO folder")
    r = run_cli("train", "--data", f"coco:{broken}", "--steps", 1, "--quiet")
    one_line_error(r, "instances_train2017.json: not valid JSON (line 1, column 13")


def test_make_dataset_keeps_ids_and_names_unique_across_splits(toy_folders, tmp_path):
    """COCO's own files number images across splits (tools that merge splits rely on it): val
    continues after train, in image ids, annotation ids and file names; VOC and YOLO names too."""
    from pycocotools.coco import COCO

    from detr_core.data.export import write_toy_dataset
    from detr_core.data.sources import open_dataset

    train, val = (COCO(str(toy_folders / "coco" / "annotations" / f"instances_{s}2017.json")) for s in ("train", "val"))
    assert len(train.getImgIds()) == 6 and len(val.getImgIds()) == 4
    assert not set(train.getImgIds()) & set(val.getImgIds())
    assert not set(train.getAnnIds()) & set(val.getAnnIds())
    names = [{img["file_name"] for img in c.dataset["images"]} for c in (train, val)]
    assert len(names[0]) == 6 and len(names[1]) == 4 and not names[0] & names[1]
    for fmt, root in (("coco", toy_folders / "coco"), ("voc", toy_folders / "voc" / "VOCdevkit"),
                      ("yolo", write_toy_dataset(tmp_path / "yolo", 3, 2, "yolo"))):
        splits = [open_dataset(f"{fmt}:{root}", role=role) for role in ("train", "val")]  # the readers still read them
        assert [len(s) for s in splits] == ([6, 4] if fmt != "yolo" else [3, 2]) and not any(s.problems for s in splits)
        stems = [{Path(r.path).name for r in s.records} for s in splits]
        assert not stems[0] & stems[1], fmt
    val_data = open_dataset(f"coco:{toy_folders / 'coco'}", role="val")
    assert sorted(val_data.coco_ground_truth().getImgIds()) == sorted(val.getImgIds())  # the file's ids, kept
