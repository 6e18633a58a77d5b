"""The analyses give the numbers they gave when each existed twice, once for toy shapes and once
for a dataset: AP figures, per-layer AP, counts and Hungarian assignments of the bundled model on
held-out toy images, crowded toy images, toy training samples and small COCO and VOC folders.
The reference was recorded with the twins (``tests/data/make_analysis_reference.py``)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
import make_analysis_reference as ref

REFERENCE = json.loads((DATA / "analysis_reference.json").read_text())

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def now(tmp_path_factory):
    """The same figures as the reference, computed with the current code."""
    from detr_core.analysis.counting import count_crowded, count_objects
    from detr_core.analysis.evaluate import evaluate_model
    from detr_core.analysis.layerwise import layerwise_ap
    from detr_core.analysis.matching import match_sample, matcher_for
    from detr_core.checkpoint import load_model
    from detr_core.data.toy import ToyShapes, heldout_split

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, ckpt = load_model(ref.ROOT / "checkpoints" / "toy_shapes.pt")
    data_config = ckpt.train_config.data
    matcher = matcher_for(model, ckpt.train_config.loss)
    heldout = heldout_split(data_config, ref.TOY_IMAGES)
    stream = ToyShapes(data_config, seed=0, split="train")
    out = {"toy": {
        "evaluate": evaluate_model(model, heldout, ref.TOY_IMAGES),
        "layerwise": [r.as_dict() for r in layerwise_ap(model, heldout, ref.TOY_IMAGES)],
        "counting": ref.counting_rows(count_crowded(model, ref.COUNTS, ref.IMAGES_PER_COUNT, data_config=data_config,
                                                    train_max_objects=data_config.max_objects)),
        "matching": [ref.assignment(match_sample(model, matcher, stream, i)) for i in ref.MATCHED_SAMPLES],
    }}
    root = tmp_path_factory.mktemp("folders")
    for fmt in ("coco", "voc"):
        dataset = ref.folder(root, fmt, model)
        out[fmt] = {
            "evaluate": evaluate_model(model, dataset),
            "layerwise": [r.as_dict() for r in layerwise_ap(model, dataset, ref.FOLDER_VAL_IMAGES)],
            "counting": ref.counting_rows(count_objects(model, dataset, threshold=0.5)),
            "matching": [ref.assignment(match_sample(model, matcher, dataset, i)) for i in ref.MATCHED_SAMPLES],
        }
    torch.set_num_threads(threads)
    return out


def _same_figures(got: dict, want: dict) -> None:
    assert set(got) >= set(want)
    for key, value in want.items():
        assert (math.isnan(got[key]) and math.isnan(value)) or got[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize("data", ["toy", "coco", "voc"])
def test_evaluation_gives_the_reference_ap(now, data):
    _same_figures(now[data]["evaluate"], REFERENCE[data]["evaluate"])


@pytest.mark.parametrize("data", ["toy", "coco", "voc"])
def test_layerwise_ap_gives_the_reference_rows(now, data):
    want = REFERENCE[data]["layerwise"]
    assert len(now[data]["layerwise"]) == len(want) == 4
    for got, row in zip(now[data]["layerwise"], want):
        _same_figures(got, row)


@pytest.mark.parametrize("data", ["toy", "coco", "voc"])
def test_counting_gives_the_reference_counts(now, data):
    assert now[data]["counting"] == REFERENCE[data]["counting"]


@pytest.mark.parametrize("data", ["toy", "coco", "voc"])
def test_matching_gives_the_reference_assignments(now, data):
    assert now[data]["matching"] == REFERENCE[data]["matching"]
