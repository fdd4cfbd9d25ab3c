import math

import pytest
import torch

from metrics.identity import (
    chance_other_photo,
    chance_same_photo,
    cosine_similarity,
    degenerate_probes,
    near_duplicate_pairs,
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


def _other_photo_rank_by_loops(distances, own_index, probe_identities, gallery_identities, same_photo):
    """The definition, one probe and one gallery entry at a time (the reference for the masked version)."""
    ranks = []
    for row, (own, identity) in enumerate(zip(own_index, probe_identities, strict=True)):
        removed = {own, *(same_photo[row] if same_photo else ())}
        same = [distances[row][j] for j, g in enumerate(gallery_identities) if identity is not None and g == identity and j not in removed]
        if not same:
            ranks.append(math.nan)
            continue
        best = min(same)
        others = [distances[row][j] for j, g in enumerate(gallery_identities) if j not in removed and g != identity]
        ranks.append(1.0 + sum(d < best for d in others) + sum(d == best for d in others) / 2)
    return ranks


@pytest.mark.parametrize("rows", [256, 3])
def test_rank_of_other_photo_matches_its_definition(monkeypatch, rows):
    """Masks built a block of rows at a time give the per-probe definition exactly: ties, near-duplicates,
    unknown people and people with one photo included."""
    import random

    import metrics.identity

    monkeypatch.setattr(metrics.identity, "_ROWS", rows)
    generator = random.Random(rows)
    for _ in range(200):
        size, probes = generator.randint(1, 25), generator.randint(0, 12)
        gallery = [generator.choice([None, "a", "b", "c", "d"]) for _ in range(size)]
        distances = [[generator.choice([0.1, 0.2, 0.3, generator.random()]) for _ in range(size)] for _ in range(probes)]
        own = [generator.randrange(size) for _ in range(probes)]
        identities = [generator.choice([None, "a", "b", "c", "e"]) for _ in range(probes)]
        twins = [tuple(generator.sample(range(size), generator.randint(0, min(3, size)))) for _ in range(probes)]
        got = rank_of_other_photo(torch.tensor(distances).reshape(probes, size), own, identities, gallery, twins).tolist()
        expected = _other_photo_rank_by_loops(distances, own, identities, gallery, twins)
        assert [None if math.isnan(v) else v for v in got] == [None if math.isnan(v) else pytest.approx(v) for v in expected]


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


def test_a_near_duplicate_of_the_own_photo_is_neither_competitor_nor_other_photo():
    # Gallery: 0 = own photo, 1 = its re-encoded copy, 2 = another photo of the same person, 3 = someone else.
    distances = torch.tensor([[0.30, 0.20, 0.40, 0.50]])
    assert rank_of_own_original(distances, [0]).tolist() == [2.0]  # the copy would push the original down
    assert rank_of_own_original(distances, [0], [[1]]).tolist() == [1.0]
    identities = ["a", "a", "a", "b"]
    assert rank_of_other_photo(distances, [0], ["a"], identities).tolist() == [1.0]  # the copy counted as "another photo"
    assert rank_of_other_photo(distances, [0], ["a"], identities, [[1]]).tolist() == [1.0]
    far = torch.tensor([[0.30, 0.20, 0.60, 0.50]])
    assert rank_of_other_photo(far, [0], ["a"], identities, [[1]]).tolist() == [2.0]  # the real other photo is second


def test_near_duplicate_pairs_are_below_the_tolerance():
    gallery = torch.tensor([[0.0, 0.05, 0.4], [0.05, 0.0, 0.45], [0.4, 0.45, 0.0]])
    assert near_duplicate_pairs(gallery, 0.15) == [(0, 1, pytest.approx(0.05))]


def test_degenerate_probes_blank_collapsed_and_one_identity():
    keys = ["a", "b", "c", "d"]
    informative = torch.tensor([[0.0, 0.5, 0.6, 0.7], [0.5, 0.0, 0.5, 0.6], [0.6, 0.5, 0.0, 0.5], [0.7, 0.6, 0.5, 0.0]])
    assert degenerate_probes([40.0] * 4, informative, keys, ["a", "b", "c", "d"], 0.6) == [None] * 4
    reasons = degenerate_probes([0.0, 40.0, 40.0, 40.0], informative, keys, ["a", "b", "c", "d"], 0.6)
    assert reasons[0].startswith("blank") and reasons[1:] == [None] * 3
    collapsed = informative.clone()
    collapsed[1, 2] = collapsed[2, 1] = 0.01  # b and c: indistinguishable to the recognizer
    assert [r is not None for r in degenerate_probes([40.0] * 4, collapsed, keys, ["a", "b", "c", "d"], 0.6)] == [False, True, True, False]
    same_person = degenerate_probes([40.0] * 2, torch.tensor([[0.0, 0.01], [0.01, 0.0]]), ["a", "a"], ["a", "a"], 0.6)
    assert same_person == [None, None]  # two photos of one person may be close
    landing = degenerate_probes([40.0] * 4, informative, keys, ["a", "a", "a", "a"], 0.6)
    assert all(r is not None and "same gallery identity" in r for r in landing)
