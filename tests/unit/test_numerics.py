"""The equivalence helpers accept rounding and nothing more."""

from __future__ import annotations

import json

import pytest
import torch

from tests.numerics import assert_equivalent, assert_results_equivalent, tolerance

pytestmark = pytest.mark.numerics  # run again under other CPU kernels (Makefile)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_rounding_passes_and_a_percent_fails(dtype):
    torch.manual_seed(0)
    x = torch.randn(50, 20, dtype=dtype) * 10
    scale = float(x.abs().max())
    assert_equivalent(x + 0.5 * tolerance(dtype) * scale, x)
    with pytest.raises(AssertionError):
        assert_equivalent(x + 2 * tolerance(dtype) * scale, x)
    bumped = x.clone()
    bumped[3, 4] *= 1.01
    with pytest.raises(AssertionError):
        assert_equivalent(bumped, x)


def test_nan_must_stand_in_the_same_places():
    x = torch.tensor([1.0, float("nan"), 3.0])
    assert_equivalent(x.clone(), x)
    with pytest.raises(AssertionError):
        assert_equivalent(torch.tensor([1.0, 2.0, 3.0]), x)


RESULT = {
    "verdict": "supported",
    "n": 48,
    "estimate": 0.123456789,
    "p": 1.6543604152742442e-69,
    "reason": "the difference is -0.02506 [-0.04464, -0.005966], needed > 0",
}


def _with(**changes) -> str:
    return json.dumps({**RESULT, **changes})


def test_results_differing_by_rounding_are_equivalent():
    assert_results_equivalent(
        _with(estimate=0.1234567891, p=1.6543631333722099e-69,
              reason="the difference is -0.02507 [-0.04464, -0.005966], needed > 0"),
        _with(),
    )  # fmt: skip


@pytest.mark.parametrize(
    "change",
    [
        {"verdict": "unsupported"},
        {"n": 47},
        {"estimate": 0.1247},  # 1%
        {"reason": "the difference is -0.02606 [-0.04464, -0.005966], needed > 0"},
        {"reason": "the ratio is -0.02506 [-0.04464, -0.005966], needed > 0"},
    ],
)
def test_results_differing_in_substance_are_not(change):
    with pytest.raises(AssertionError):
        assert_results_equivalent(_with(**change), _with())
