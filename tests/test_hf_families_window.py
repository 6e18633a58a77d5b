"""The window opens a Conditional DETR and an RT-DETR Hugging Face folder, and the existing views
show them through the capture protocol: the dense attention heatmap for Conditional DETR, the
deformable view's sampling points and its encoder self-attention at a point clicked on the picture
for RT-DETR, and the Model panel names each family and paper."""

from __future__ import annotations

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from tests.test_hf_families import _dense_family, _rt_detr  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_blocking_questions")


@pytest.fixture
def folders(tmp_path):
    import json

    conditional, rt = tmp_path / "conditional", tmp_path / "rt_detr"
    _dense_family("conditional_detr").save_pretrained(conditional)
    _rt_detr().save_pretrained(rt)
    # the folders' image processors: small inputs (the explorer resizes as they say), a fast test
    (conditional / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 64,
                                                                               "longest_edge": 96}}))
    (rt / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 96, "width": 96}}))
    return conditional, rt


def test_the_views_show_a_conditional_detr_and_an_rt_detr(qtbot, settings, folders):
    from pathlib import Path

    from detr_core.analysis.heatmaps import cross_attention_map
    from explorer.main_window import MainWindow

    conditional, rt = folders
    window = MainWindow(settings=settings, checkpoint=conditional, runs_folder=Path(settings.fileName()).parent / "runs")
    qtbot.addWidget(window)
    window.resize(1366, 768)
    window.show()
    try:
        qtbot.waitUntil(lambda: window.state.result is not None and window.state.model is not None, timeout=30000)
        result = window.state.result
        assert window.state.model.config.attention == "conditional_detr"
        assert (window.state.model.config.image_min_size, window.state.model.config.image_max_size) == (64, 96)
        assert result.cross_attention is not None and result.cross_attention.shape[:3] == (2, 2, 8)
        assert "Conditional DETR" in window.model_info.summary.text()
        assert "Meng et al. 2021" in window.model_info.summary.text()
        # the dense heatmap drawn is the selected query's captured map, as for a native DETR
        window.queries.set_threshold(0.0)
        window.state.set_selected_query(3)
        window.attention.layer.setCurrentIndex(0)
        window.attention.head.setCurrentIndex(2)  # head 2 (index 0 is the mean)
        expected = cross_attention_map(result, 3, 0, 1, smooth=True)
        qtbot.waitUntil(lambda: window.canvas.heat_item.image is not None
                        and window.canvas.heat_item.image.shape == expected.shape, timeout=5000)
        np.testing.assert_allclose(window.canvas.heat_item.image, expected, rtol=1e-5, atol=1e-9)

        window.open_checkpoint(rt)
        qtbot.waitUntil(lambda: window.state.result is not None and window.state.result.deformable is not None,
                        timeout=30000)
        assert window.state.model.config.attention == "rt_detr" and "RT-DETR" in window.model_info.summary.text()
        assert (window.state.model.config.image_min_size, window.state.model.config.image_max_size) == (96, 96)
        window.deformable_dock.raise_()
        assert window.deformable.pages.currentIndex() == 1
        window.state.set_selected_query(5)
        s = window.state.result.deformable
        assert (s.num_heads, s.num_levels, s.num_points) == (2, 3, 4)
        qtbot.waitUntil(lambda: len(window.deformable.points_item.data) == 2 * 3 * 4, timeout=5000)
        layer = window.deformable.layer_slider.value()
        drawn = sorted(map(tuple, np.round(window.deformable.shown_points()[0], 3)))
        assert drawn == sorted(map(tuple, np.round(s.decoder_points[layer, 5].reshape(-1, 2).numpy(), 3)))

        # a point clicked on the picture: the view's clicked-pixel mode draws RT-DETR's encoder
        # self-attention (AIFI, its coarsest level) from the token under it, as captured
        from explorer.views.deformable import MODE_PIXEL

        enc = window.state.result.encoder_self
        assert enc is not None and enc.shape == (3, 3) and enc.level == 2
        window.deformable.set_mode(MODE_PIXEL)
        h, w = window.state.image.shape[:2]
        window.canvas.click_image(0.8 * h, 0.2 * w, shift=True)
        i, j = enc.cell_at(0.8 * h, 0.2 * w)
        assert (i, j) == (2, 0)
        expected = enc.weights[0, :, i * 3 + j].mean(0).reshape(3, 3).numpy()
        qtbot.waitUntil(lambda: window.deformable.encoder_heat_item.image is not None, timeout=5000)
        np.testing.assert_allclose(window.deformable.encoder_heat_item.image, expected, rtol=1e-6)
        assert "Encoder self-attention (AIFI)" in window.deformable.caption.text()
    finally:
        for view in window.views:
            view.cancel_job()
            view.wait_job(10000)
        window.controller.shutdown(10000)
