"""Bad inputs raise a ValueError that says what was expected, from every backend."""

import pytest
import torch

from sda.kernels import assign
from sda.kernels.assign_triton import assign_triton
from sda.kernels.reference import assign_reference

BACKENDS = [assign, assign_reference, assign_triton]
GOOD_X, GOOD_C = torch.randn(5, 8), torch.randn(4, 8)


def bad_codebook(value):
    c = GOOD_C.clone()
    c[2, 3] = value
    return c


CASES = [
    (torch.randn(5, 8, 1), GOOD_C, r"x must be a 2-D tensor \[N, D\], got shape \(5, 8, 1\)"),
    (torch.randn(8), GOOD_C, r"x must be a 2-D tensor"),
    (GOOD_X, torch.randn(4, 8, 2), r"codebook must be a 2-D tensor \[K, D\]"),
    ([[1.0] * 8], GOOD_C, r"x must be a torch.Tensor"),
    (GOOD_X, torch.randn(4, 7), r"x has D=8 but codebook has D=7"),
    (GOOD_X, torch.randn(0, 8), r"at least one code"),
    (GOOD_X.long(), GOOD_C, r"x has dtype torch.int64; expected float32, float16 or bfloat16"),
    (GOOD_X, GOOD_C.double(), r"codebook has dtype torch.float64"),
    (GOOD_X, GOOD_C.to("meta"), r"x is on cpu but codebook is on meta"),
    (GOOD_X, bad_codebook(float("nan")), r"non-finite values .* in codes \[2\]"),
    (GOOD_X, bad_codebook(float("-inf")), r"non-finite values .* in codes \[2\]"),
    (GOOD_X, bad_codebook(3e19), r"non-finite values .* in codes \[2\]"),   # |c|^2 overflows
]


@pytest.mark.parametrize("fn", BACKENDS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("x, codebook, message", CASES)
def test_bad_inputs_are_named(fn, x, codebook, message):
    with pytest.raises(ValueError, match=message):
        fn(x, codebook)


@pytest.mark.parametrize("fn", BACKENDS, ids=lambda f: f.__name__)
def test_check_finite_false_leaves_the_check_to_the_caller_and_still_answers_in_range(fn):
    # The training step checks its codebooks once per step (ResidualVQ.all_finite) instead of once per call.
    out = fn(GOOD_X, bad_codebook(float("nan")), check_finite=False)
    assert out.indices.shape == (5,) and bool(((out.indices >= 0) & (out.indices < 4)).all())
    assert int(out.counts.sum()) == 5
