"""Model families: outputs stay bit-identical across restructurings of the model code.

``tests/data/family_reference.pt`` holds what four models computed (the bundled toy model, a small
deformable model, a small Hugging Face folder, a small official-format file): outputs of every
decoder layer and every captured attention or sampling tensor, made by
``tests/data/make_family_reference.py``. The current code must give the same bits (it may compute
more, e.g. the capture protocol's own fields, but every recorded tensor must be there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(DATA))
from make_family_reference import MODELS, REFERENCE, open_model, outputs


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


@pytest.mark.parametrize("name", MODELS)
def test_outputs_are_bit_identical_to_the_reference(tmp_path, reference, name):
    if name == "hf":
        pytest.importorskip("transformers")
    expected = reference[name]
    got = outputs(*open_model(name, tmp_path))
    assert not set(expected) - set(got), f"{name}: no longer computed: {sorted(set(expected) - set(got))}"
    differ = [k for k in expected if got[k].dtype != expected[k].dtype or not torch.equal(got[k], expected[k])]
    assert not differ, f"{name}: {len(differ)} of {len(expected)} tensors differ, e.g. {differ[:5]}"
