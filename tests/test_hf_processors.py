"""A Hugging Face folder's image processor (``preprocessor_config.json``) is followed, refused by name or
without effect, field by field: the explorer's pixels are the processor's own on a real image (transformers'
processor runs here as the anchor), and every field of transformers' DETR-family processor classes is in one
of hf_processor.py's three tables. Tiny random models; nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

from detr_core.checkpoint import CheckpointError, load_checkpoint
from detr_core.data.images import IMAGENET_STD, prepare, read_image
from detr_core.formats import hf_processor
from detr_core.model.nested_tensor import nested_tensor_from_tensor_list
from tests.test_deformable import _hf_model as _hf_deformable
from tests.test_hf_checkpoints import _hf_model
from tests.test_hf_families import _dense_family, _rt_detr

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: tiny models, a shared machine

PIXELS = {"rtol": 1e-5, "atol": 1e-5}  # relative too: a processor without rescaling gives 0-255 pixels
SIZE = {"shortest_edge": 64, "longest_edge": 96}
# the processor class(es) transformers gives each family's folders (AutoImageProcessor's table in
# transformers 5.24, not imported here: it takes 20 s; DAB-DETR, RT-DETRv2 and D-FINE have no entry there,
# their published folders name these)
FAMILY_PROCESSORS = {
    "detr": ["DetrImageProcessor", "DetrImageProcessorPil"],
    "deformable_detr": ["DeformableDetrImageProcessor", "DeformableDetrImageProcessorPil"],
    "conditional_detr": ["ConditionalDetrImageProcessor", "ConditionalDetrImageProcessorPil"],
    "dab-detr": ["DetrImageProcessor", "DetrImageProcessorPil"],
    "rt_detr": ["RTDetrImageProcessor", "RTDetrImageProcessorPil"],
    "rt_detr_v2": ["RTDetrImageProcessor", "RTDetrImageProcessorPil"],
    "d_fine": ["RTDetrImageProcessor", "RTDetrImageProcessorPil"],
    "deimv2": ["RTDetrImageProcessor", "RTDetrImageProcessorPil"],
    "lw_detr": ["DeformableDetrImageProcessor", "DeformableDetrImageProcessorPil"],
    "rf_detr": ["RfDetrImageProcessor"],
}


@pytest.fixture(scope="module")
def photo():
    """A real image read as the app reads it (a screenshot in docs/: text, icons, plots, a photo's edges),
    [H, W, 3] uint8; crops of it are 64x96 and 64x64, sizes the processors below keep (no resampling)."""
    return read_image("docs/family-rt_detr-1366x768.png").array


def _crops(photo):
    return [photo[200:264, 300:396].copy(), photo[420:484, 600:664].copy()]  # [64, 96, 3], [64, 64, 3]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """family -> (transformers' model, its save_pretrained folder) for RT-DETR (not normalized, no pixel
    mask), Conditional DETR (normalized, a pixel mask), DETR and Deformable DETR (the explorer's own modules)."""
    made = {}
    for name, model in (("rt_detr", _rt_detr()), ("conditional_detr", _dense_family("conditional_detr")),
                        ("detr", _hf_model()), ("deformable_detr", _hf_deformable())):
        folder = tmp_path_factory.mktemp(name)
        model.save_pretrained(folder)
        made[name] = (model, folder)
    return made


def _with_processor(folder, tmp_path, processor=None, **fields):
    """A copy of ``folder`` whose preprocessor_config.json is ``processor``'s own save_pretrained (or
    ``fields`` as written)."""
    copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
    shutil.copytree(folder, copy)
    if processor is not None:
        processor.save_pretrained(copy)
    else:
        (copy / hf_processor.PROCESSOR_NAME).write_text(json.dumps(fields))
    return copy


def test_every_image_processor_field_is_followed_refused_or_without_effect():
    """A processor field that changes the pixels cannot be ignored unnoticed: every field of every
    DETR-family processor class (its saved fields and the keyword arguments it takes) is in exactly one
    table (a new transformers version's new field, or a family's new processor class, fails here)."""
    from detr_core.model.hf_families import FAMILIES

    assert set(FAMILY_PROCESSORS) == {"detr", "deformable_detr", *FAMILIES}  # a new family needs its line
    fields = set()
    for name in sorted({n for names in FAMILY_PROCESSORS.values() for n in names}):
        cls = getattr(transformers, name)
        fields |= set(cls().to_dict()) | set(cls.valid_kwargs.__annotations__)
    tables = [set(hf_processor.PROCESSOR_FOLLOWED), set(hf_processor.PROCESSOR_REFUSED),
              hf_processor.PROCESSOR_NO_EFFECT]
    assert {"do_rescale", "rescale_factor", "do_pad", "pad_size", "format"} <= fields  # the walk sees them
    unknown = sorted(f for f in fields if not any(f in t for t in tables))
    assert not unknown, f"image processor fields neither followed, refused nor without effect: {unknown}"
    both = [f for i, a in enumerate(tables) for b in tables[i + 1:] for f in a & b]
    assert not both, f"fields in two tables: {both}"
    for name in sorted({n for names in FAMILY_PROCESSORS.values() for n in names}):
        processor = getattr(transformers, name)()
        for field, (runs, _why) in hf_processor.PROCESSOR_REFUSED.items():  # what runs is the default
            assert getattr(processor, field, None) == runs[0], (name, field)
        # and what a processor saves by default opens: nothing refused
        assert not hf_processor.processor_problems(json.loads(processor.to_json_string())), name


# processor fields -> what they make of the pixels (beside size, which keeps the crops' own sizes)
VARIANTS = {
    "defaults": {},
    "0-255 pixels": {"do_rescale": False, "do_normalize": False},
    "0-255 pixels, normalized": {"do_rescale": False, "do_normalize": True, "image_mean": [120.0, 115.0, 100.0],
                                 "image_std": [60.0, 58.0, 57.0]},
    "[-1, 1]": {"rescale_factor": 1 / 127.5, "do_normalize": True, "image_mean": 1.0, "image_std": 1.0},
    "own mean and std": {"do_normalize": True, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.25]},
}


@pytest.mark.parametrize("family,backend", [("rt_detr", "RTDetrImageProcessor"),
                                            ("conditional_detr", "ConditionalDetrImageProcessorPil")])
def test_the_explorers_pixels_are_the_processors_own(folders, photo, tmp_path, family, backend):
    """For each variant, a padded batch of two crops of a real image: the pixels (and pixel mask) the
    wrapped family hands transformers' forward equal those transformers' processor makes of the same
    crops, its saved file read back as the app reads a folder's (torchvision and PIL backends)."""
    from detr_core.model.hf_families.base import processor_pixels

    _hf, folder = folders[family]
    model = load_checkpoint(folder).build_model()
    crops = _crops(photo)
    seen = []
    for name, fields in VARIANTS.items():
        processor = getattr(transformers, backend)(size=SIZE, do_pad=True, **fields)
        processor.save_pretrained(tmp_path / name)  # the file as transformers writes it, read as the app reads it
        theirs = processor(images=crops, return_tensors="pt")
        model.config.transformers_processor = processor_pixels(tmp_path / name)  # as open_folder sets it
        batch = nested_tensor_from_tensor_list([prepare(c, 64, 96) for c in crops])  # as the app prepares them
        ours = model.inputs(batch)
        # (the torchvision backend returns uint8 where it neither rescales nor normalizes: the same values)
        torch.testing.assert_close(ours["pixel_values"], theirs["pixel_values"].float(), **PIXELS)
        if "pixel_mask" in ours:
            assert torch.equal(ours["pixel_mask"], theirs["pixel_mask"]), name
        seen.append(ours["pixel_values"])
    assert all(not torch.allclose(a, b, atol=1e-2) for i, a in enumerate(seen) for b in seen[i + 1:])


def test_a_folder_without_rescaling_opens_to_transformers_outputs(folders, photo, tmp_path):
    """RT-DETR whose processor does not rescale (its model takes 0-255 pixels), opened as the app opens it:
    its predictions are transformers' on the processor's own pixels; the size is the processor's."""
    hf, folder = folders["rt_detr"]
    processor = transformers.RTDetrImageProcessor(size={"height": 64, "width": 96}, do_rescale=False)
    ckpt = load_checkpoint(_with_processor(folder, tmp_path, processor))
    assert (ckpt.model_config.image_min_size, ckpt.model_config.image_max_size) == (64, 96)
    crop = _crops(photo)[0]
    model = ckpt.build_model()
    with torch.no_grad():
        # (uint8 from the torchvision backend, which neither rescales nor normalizes here: the same values)
        theirs = hf(pixel_values=processor(images=crop, return_tensors="pt")["pixel_values"].float())
        ours = model([prepare(crop, 64, 96)])
    torch.testing.assert_close(ours["pred_logits"], theirs.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours["pred_boxes"], theirs.pred_boxes, rtol=1e-4, atol=1e-4)


def test_detr_follows_the_processors_size_and_refuses_other_pixels(folders, photo, tmp_path):
    """The explorer's own DETR (and Deformable DETR): the size is followed (also transformers 4's ``"size": 64, "max_size": 96``)
    and its input is the processor's pixels; a processor giving other pixels than ImageNet-normalized
    8-bit / 255 is refused by name."""
    _hf, folder = folders["detr"]
    crop = _crops(photo)[0]
    for backend in ("DetrImageProcessor", "DetrImageProcessorPil"):
        processor = getattr(transformers, backend)(size=SIZE)
        config = load_checkpoint(_with_processor(folder, tmp_path, processor)).model_config
        assert (config.image_min_size, config.image_max_size) == (64, 96)
        theirs = processor(images=crop, return_tensors="pt")["pixel_values"][0]
        torch.testing.assert_close(prepare(crop, config.image_min_size, config.image_max_size), theirs, **PIXELS)
        # resampled (a 128x192 crop to 64x96): within one 8-bit level, the processor's rounding to uint8
        # (torchvision) or PIL's own bilinear filter, where the explorer resamples floats
        big = photo[100:228, 200:392]
        theirs = processor(images=big, return_tensors="pt")["pixel_values"][0]
        ours = prepare(big, config.image_min_size, config.image_max_size)
        assert ours.shape == theirs.shape == (3, 64, 96)
        level = torch.tensor(IMAGENET_STD)[:, None, None] * (ours - theirs).abs() * 255  # in 8-bit levels
        assert float(level.max()) <= 1.0 + 1e-4 and float(level.mean()) < 0.5, backend
    old = _with_processor(folder, tmp_path, size=64, max_size=96, feature_extractor_type="DetrFeatureExtractor")
    assert transformers.DetrImageProcessor.from_pretrained(old).size == {"shortest_edge": 64, "longest_edge": 96}
    config = load_checkpoint(old).model_config
    assert (config.image_min_size, config.image_max_size) == (64, 96)
    for fields, named in (({"do_rescale": False}, "do_rescale=False"),
                          ({"rescale_factor": 1 / 127.5}, "rescale_factor=0.00784"),
                          ({"do_normalize": False}, "do_normalize=False"),
                          ({"image_mean": [0.5, 0.5, 0.5]}, r"image_mean=\[0.5, 0.5, 0.5\]")):
        with pytest.raises(CheckpointError, match=f"preprocessor_config.json: {named}.*ImageNet"):
            load_checkpoint(_with_processor(folder, tmp_path, **fields))
    # Deformable DETR's folders go the same way
    _hf, folder = folders["deformable_detr"]
    config = load_checkpoint(_with_processor(folder, tmp_path, transformers.DeformableDetrImageProcessor(size=SIZE)))
    assert (config.model_config.image_min_size, config.model_config.image_max_size) == (64, 96)
    with pytest.raises(CheckpointError, match="preprocessor_config.json: do_normalize=False .*ImageNet"):
        load_checkpoint(_with_processor(folder, tmp_path, do_normalize=False))


def test_a_processor_field_the_explorer_cannot_follow_is_named(folders, tmp_path):
    """do_resize=False, another resample, a fixed pad_size, a size of another layout and a field no
    processor has are refused by name with their value, before any weight is read."""
    _hf, folder = folders["rt_detr"]
    for fields, named in (({"do_resize": False}, "do_resize=False is not supported"),
                          ({"resample": 3}, "resample=3 is not supported .*bilinear"),
                          ({"pad_size": {"height": 128, "width": 128}}, "pad_size=.* fixed size"),
                          ({"size": {"max_height": 64, "max_width": 96}}, "size=.* is not supported"),
                          ({"size": {"longest_edge": 96}}, "size=.* is not supported"),
                          ({"do_rescale": "yes"}, "do_rescale='yes' is not true or false"),
                          ({"rescale_factor": 0}, "rescale_factor=0 is not a positive number"),
                          ({"do_flip_channel_order": True}, "do_flip_channel_order=True is a field the explorer "
                                                            "does not know")):
        with pytest.raises(CheckpointError, match=f"preprocessor_config.json: {named}"):
            load_checkpoint(_with_processor(folder, tmp_path, **fields))
    # fields without effect, and what older transformers wrote, open
    fields = {"format": "coco_panoptic", "do_convert_annotations": False, "do_center_crop": True,
              "crop_size": {"height": 8, "width": 8}, "do_convert_rgb": True, "do_pad": False,
              "image_processor_type": "RTDetrImageProcessor", "size": {"height": 64, "width": 96}}
    config = load_checkpoint(_with_processor(folder, tmp_path, **fields)).model_config
    assert (config.image_min_size, config.image_max_size) == (64, 96)


def test_a_height_and_width_size_stretches_every_image_as_rt_detrs_processor_does(folders, photo, tmp_path):
    """RT-DETR's processor (``{"height", "width"}``, 640x640 by default) stretches every photo to that
    size, not keeping its aspect ratio, and so do the authors' pipelines: the explorer feeds the model
    the same input on a photo of another shape, and its boxes come back in that photo's pixels."""
    from torchvision.ops import box_convert

    from detr_core.analysis.capture import run_inference

    hf, folder = folders["rt_detr"]
    default = load_checkpoint(folder)
    assert default.model_config.fixed_input_size == (640, 640)  # no processor: the family's
    # a size the user asks for (--set image_min_size=..., the Model panel) replaces the stretch
    assert default.with_settings(image_min_size=480, image_max_size=800).model_config.fixed_input_size is None
    chosen = default.with_settings(image_height=320, image_width=480).model_config
    assert (chosen.fixed_input_size, chosen.image_min_size, chosen.image_max_size) == ((320, 480), 320, 480)
    assert load_checkpoint(folders["conditional_detr"][1]).model_config.fixed_input_size is None
    processor = transformers.RTDetrImageProcessor(size={"height": 64, "width": 96})
    model = load_checkpoint(_with_processor(folder, tmp_path, processor)).build_model().eval()
    assert model.config.fixed_input_size == (64, 96)
    for crop in (photo[100:196, 500:564].copy(), photo[420:484, 600:664].copy()):  # [96, 64] and [64, 64]
        theirs = processor(images=crop, return_tensors="pt")["pixel_values"].float()  # [1, 3, 64, 96]
        ours = model.inputs(nested_tensor_from_tensor_list(
            [prepare(crop, model.config.image_min_size, model.config.image_max_size, model.config.fixed_input_size)]))
        assert ours["pixel_values"].shape == theirs.shape == (1, 3, 64, 96)
        assert (ours["pixel_values"] - theirs).abs().max() <= 1 / 255  # resampled: within one 8-bit level
        result = run_inference(model, crop, ["cat", "dog", "bird"], capture=False)
        assert result.input_size == (64, 96)
        with torch.no_grad():
            expected = hf(pixel_values=ours["pixel_values"])
        h, w = crop.shape[:2]
        xyxy = box_convert(expected.pred_boxes[0], "cxcywh", "xyxy") * torch.tensor([w, h, w, h])
        torch.testing.assert_close(result.boxes_xyxy, xyxy, rtol=1e-4, atol=1e-3)
