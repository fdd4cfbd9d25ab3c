import math

import pytest
import torch

from metrics.identity import (
    chance_other_photo,
    chance_same_photo,
    cosine_similarity,
    rank_of_other_photo,
    rank_of_own_original,
)


def test_rank_of_own_original_counts_closer_entries_and_half_ties():
    distances = torch.tensor([[0.1, 0.5, 0.9], [0.2, 0.4, 0.2], [0.3, 0.3, 0.3]])
    ranks = rank_of_own_original(distances, [0, 1, 2])
    assert ranks.tolist() == [1.0, 3.0, 2.0]  # row 3: two ties count half each


def test_rank_of_other_photo_removes_own_original():
    # Gallery: 0=a(own of probe 0), 1=a, 2=b, 3=None
    distances = torch.tensor([[0.0, 0.5, 0.4, 0.9], [0.3, 0.1, 0.2, 0.05]])
    ranks = rank_of_other_photo(distances, [0, 2], ["a", "b"], ["a", "a", "b", None])
    assert ranks[0].item() == 2.0  # b (0.4) beats the other photo of a (0.5)
    assert math.isnan(ranks[1].item())  # b has no other photo


def test_unknown_identity_has_no_other_photo_rank():
    ranks = rank_of_other_photo(torch.zeros(1, 2), [0], [None], [None, None])
    assert math.isnan(ranks[0].item())


def test_chance_levels():
    assert chance_same_photo(1, 5) == pytest.approx(0.2)
    assert chance_same_photo(5, 3) == 1.0
    # 4 candidates, 2 of them the same person: P(top-1 is one of them) = 1/2
    assert chance_other_photo(1, 4, 2) == pytest.approx(0.5)
    assert chance_other_photo(2, 4, 1) == pytest.approx(0.5)
    assert math.isnan(chance_other_photo(1, 4, 0))


def test_cosine_similarity_is_row_wise():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert cosine_similarity(a, b).tolist() == pytest.approx([1.0, 0.0])
