"""Channels-last max pooling gives torch's own values and layout, and a converted model its outputs."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from redteam.core.pooling import ChannelsLastMaxPool2d, max_pool2d, with_channels_last_max_pools


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize(("kernel", "stride", "padding", "ceil_mode"), [(2, 2, 0, True), (3, 2, 0, True), (3, 2, 1, False), (3, 1, 0, False)])
def test_the_pool_is_torchs_in_value_and_layout(channels_last: bool, kernel: int, stride: int, padding: int, ceil_mode: bool) -> None:
    x = torch.randn(3, 10, 23, 17)
    x[0, 0, :4, :4] = torch.nan  # a NaN is propagated the way torch propagates it
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    expected = F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode)
    got = max_pool2d(x, kernel, stride, padding, ceil_mode)
    assert torch.equal(got.nan_to_num(7.0), expected.nan_to_num(7.0)) and torch.equal(got.isnan(), expected.isnan())
    assert got.stride() == expected.stride()  # a following convolution rounds by its input's layout


def test_a_converted_model_gives_the_same_outputs_bit_for_bit_and_pickles() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.PReLU(8),
        torch.nn.MaxPool2d(3, 2, ceil_mode=True),
        torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3), torch.nn.MaxPool2d(2, 2)),
        torch.nn.MaxPool2d(2, 2, return_indices=True),  # kept: the indices are not computed channels-last
    ).eval()
    converted = with_channels_last_max_pools(copy.deepcopy(model))
    assert [type(m).__name__ for m in converted.modules()].count("ChannelsLastMaxPool2d") == 2
    assert type(converted[4]) is torch.nn.MaxPool2d
    x = torch.randn(5, 3, 41, 37)
    with torch.no_grad():
        (expected, expected_indices), (got, got_indices) = model(x), converted(x)
    assert torch.equal(got, expected) and torch.equal(got_indices, expected_indices)
    assert isinstance(pickle.loads(pickle.dumps(converted[2])), ChannelsLastMaxPool2d)
