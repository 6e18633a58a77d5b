import math

import torch

from detr_core.model.position_encoding import PositionEmbeddingSine


def test_shape_and_range():
    pe = PositionEmbeddingSine(16)
    mask = torch.zeros(2, 5, 7, dtype=torch.bool)
    pos = pe(mask)
    assert pos.shape == (2, 32, 5, 7)
    assert pos.abs().max() <= 1.0


def test_first_half_encodes_y_second_half_x():
    pe = PositionEmbeddingSine(16)
    pos = pe(torch.zeros(1, 6, 9, dtype=torch.bool))[0]  # [32, 6, 9]
    y_part, x_part = pos[:16], pos[16:]
    assert torch.allclose(y_part[:, :, 0:1].expand_as(y_part), y_part)  # constant along x
    assert torch.allclose(x_part[:, 0:1, :].expand_as(x_part), x_part)  # constant along y


def test_normalized_coordinates_span_two_pi():
    """The last valid row/column reaches scale = 2*pi (sin of the first feature = sin(2*pi) = 0)."""
    pe = PositionEmbeddingSine(16)
    pos = pe(torch.zeros(1, 4, 4, dtype=torch.bool))[0]
    # feature 0 is sin(y_embed / 1): y_embed of the last row is 2*pi*(4/4)
    assert abs(pos[0, -1, 0].item() - math.sin(2 * math.pi)) < 1e-4
    assert abs(pos[0, 0, 0].item() - math.sin(2 * math.pi / 4)) < 1e-4


def test_padding_does_not_shift_positions_of_valid_pixels():
    pe = PositionEmbeddingSine(8)
    small = torch.zeros(1, 3, 4, dtype=torch.bool)
    padded = torch.ones(1, 5, 6, dtype=torch.bool)
    padded[:, :3, :4] = False
    a = pe(small)[0]
    b = pe(padded)[0][:, :3, :4]
    torch.testing.assert_close(a, b)


def test_distinct_positions_get_distinct_codes():
    pe = PositionEmbeddingSine(32)
    pos = pe(torch.zeros(1, 8, 8, dtype=torch.bool))[0].flatten(1).T  # [64, 64]
    dist = torch.cdist(pos, pos)
    off_diag = dist + torch.eye(64) * 1e9
    assert off_diag.min() > 1e-3
