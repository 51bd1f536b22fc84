"""Teacher-forcing targets: <sos>/<eos> placement and padding (WeNet's ``add_sos_eos``) and
per-sequence reversal (``reverse_pad_list``), against list-based constructions."""
from __future__ import annotations

import torch

from speechforge_plugins.u2pp.targets import IGNORE_ID, add_sos_eos, reverse_pad_list

SOS = EOS = 9
SEQUENCES = [[1, 2, 3, 4], [5, 6], [], [7]]


def padded(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ys = torch.tensor([s + [IGNORE_ID] * (width - len(s)) for s in sequences])
    return ys, torch.tensor([len(s) for s in sequences])


def test_add_sos_eos_matches_lists():
    ys, lens = padded(SEQUENCES)
    ys_in, ys_out = add_sos_eos(ys, lens, SOS, EOS)
    width = max(len(s) for s in SEQUENCES) + 1
    assert ys_in.tolist() == [[SOS] + s + [EOS] * (width - 1 - len(s)) for s in SEQUENCES]
    assert ys_out.tolist() == [s + [EOS] + [IGNORE_ID] * (width - 1 - len(s)) for s in SEQUENCES]


def test_tokens_after_the_length_are_ignored():
    ys = torch.tensor([[1, 2, 3], [4, 5, 6]])
    ys_in, ys_out = add_sos_eos(ys, torch.tensor([3, 1]), SOS, EOS)
    assert ys_in.tolist() == [[SOS, 1, 2, 3], [SOS, 4, EOS, EOS]]
    assert ys_out.tolist() == [[1, 2, 3, EOS], [4, EOS, IGNORE_ID, IGNORE_ID]]


def test_reverse_pad_list_reverses_each_valid_part():
    ys, lens = padded(SEQUENCES)
    width = ys.size(1)
    expected = [s[::-1] + [IGNORE_ID] * (width - len(s)) for s in SEQUENCES]
    assert reverse_pad_list(ys, lens).tolist() == expected
    assert reverse_pad_list(ys, lens, pad_value=0).tolist() == [[0 if v == IGNORE_ID else v for v in row] for row in expected]


def test_right_to_left_pairs():
    ys, lens = padded(SEQUENCES)
    r_in, r_out = add_sos_eos(reverse_pad_list(ys, lens), lens, SOS, EOS)
    assert r_in[0].tolist() == [SOS, 4, 3, 2, 1]
    assert r_out[1].tolist() == [6, 5, EOS, IGNORE_ID, IGNORE_ID]
    assert r_out[2].tolist() == [EOS] + [IGNORE_ID] * 4
