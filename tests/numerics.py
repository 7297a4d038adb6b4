"""Two properties the tests keep apart.

- **Determinism**: the same computation (the same operations on the same shapes and inputs, on
  the same machine, threads and settings) gives the same bytes. Those tests use `torch.equal`.
- **Equivalence**: two different computations of one value (a batched pass against one pass per
  edit, a window cut short, a product split by columns, a pass restarted half-way) sum the same
  terms, but the CPU library may choose another kernel for another shape, which adds them in
  another order. No library promises which kernel a shape gets on which processor, so these
  tests allow float rounding: `assert_equivalent`.

The tolerance is relative to the magnitude of the values compared (their largest absolute
value), not to each element, because a value near zero is the difference of larger terms and
carries their rounding. One re-associated sum of n terms moves its result by a few units in the
last place (ULP) of the larger partial sums; the models tested have at most three blocks, each
adding a handful of such sums, and a softmax or LayerNorm may amplify a difference by a small
factor. `FLOAT32_TOLERANCE` (2⁻¹⁶ ≈ 1.5e-5 of the scale, 128 ULPs of it) leaves an order of
magnitude above the largest difference measured under every kernel choice the suite is run with
(`make test`'s second pass, docs/reproducibility.md), while a real indexing or masking bug moves
values by 1e-2 of their scale or more (`tests/unit/test_batched.py` shows that it fails then).
In float64 the same argument gives about 1e-13; `FLOAT64_TOLERANCE` is 1e-10.
"""

from __future__ import annotations

import json
import math
import re

import torch

FLOAT32_TOLERANCE = 2.0**-16
FLOAT64_TOLERANCE = 1e-10


def tolerance(dtype: torch.dtype) -> float:
    """The largest difference allowed between two computations, relative to the values' scale."""
    return FLOAT64_TOLERANCE if dtype == torch.float64 else FLOAT32_TOLERANCE


def scale_of(values: torch.Tensor) -> float:
    """The magnitude of a tensor's finite values (1 for a tensor of zeros or of no finite value)."""
    finite = values[values.isfinite()]
    largest = float(finite.abs().max()) if finite.numel() else 0.0
    return largest if largest > 0 else 1.0


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual − expected| over the finite values, relative to `expected`'s scale."""
    both = expected.isfinite() & actual.isfinite()
    if not both.any():
        return 0.0
    return float((actual[both] - expected[both]).abs().max()) / scale_of(expected)


def assert_equivalent(actual: torch.Tensor, expected: torch.Tensor, what: object = "") -> None:
    """`actual` equals `expected` up to float rounding (see the module's docstring): the same
    shape and dtype, NaN and infinities in the same places, every other value within
    `tolerance(dtype)` times the expected values' scale."""
    atol = tolerance(expected.dtype) * scale_of(expected)
    torch.testing.assert_close(
        actual, expected, rtol=0.0, atol=atol, equal_nan=True, msg=lambda m: f"{what}: {m}"
    )


# A study's results hold statistics (float64) of measured float32 values: two computations of
# the same values differ there by about 1e-7 of the values' scale, and an estimate near zero (a
# difference of larger values) or a p-value far in a tail (exponential in the effect) can carry
# that difference relatively larger. These bounds cover both; a read of the wrong sequence,
# position or checkpoint moves estimates by 1e-2 or more of their scale.
RESULT_RTOL = 1e-4
RESULT_ATOL = 1e-6
# Numbers in reasons are printed to four significant figures: one unit of the last one.
TEXT_RTOL = 2e-3
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def assert_results_equivalent(actual: str, expected: str) -> None:
    """Two results JSON documents from different computations of the same study: the same
    structure, verdicts, names, counts and text, every float within `RESULT_RTOL` (or
    `RESULT_ATOL`) and every number in a text within `TEXT_RTOL`."""
    _compare(json.loads(actual), json.loads(expected), "$")


def _compare(a: object, b: object, where: str) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _compare(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), f"{where}: {a!r} {b!r}"
        close = math.isclose(a, b, rel_tol=RESULT_RTOL, abs_tol=RESULT_ATOL)
        assert close or (math.isnan(a) and math.isnan(b)), f"{where}: {a!r} != {b!r}"
    elif isinstance(a, str) and isinstance(b, str) and a != b:
        assert _NUMBER.sub("#", a) == _NUMBER.sub("#", b), f"{where}: {a!r} != {b!r}"
        for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True):
            assert math.isclose(float(x), float(y), rel_tol=TEXT_RTOL), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
