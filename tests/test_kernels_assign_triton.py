"""The Triton kernel (kernels/assign_triton.py) against the PyTorch reference, on CPU.

conftest.py sets TRITON_INTERPRET=1, so the kernel runs through Triton's interpreter: the
same kernel source the GPU compiles, on small shapes.
"""

import pytest
import torch

from sda.kernels.assign_triton import assign_triton, interpreting, supports
from sda.kernels.reference import assign_reference
from sda.kernels.testing import check_assignment, oracle_distances, rounding_bound

pytestmark = pytest.mark.skipif(not interpreting(), reason="TRITON_INTERPRET=1 was not set before triton import")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def compare_with_reference(x, codebook, with_sums=True, max_near_tie_fraction=0.01):
    """Kernel vs reference and oracle: indices equal or near-ties, counts exact, sums to rounding."""
    got = assign_triton(x, codebook, with_sums)
    want = assign_reference(x, codebook, with_sums)
    check_assignment(x, codebook, got, with_sums, max_near_tie_fraction)
    off = torch.nonzero(got.indices != want.indices).flatten()
    if len(off):   # every disagreement between the backends must be a near-tie
        dist = oracle_distances(x[off], codebook)
        rows = torch.arange(len(off))
        gap = (dist[rows, got.indices[off]] - dist[rows, want.indices[off]]).abs()
        assert bool((gap <= rounding_bound(x[off], codebook)).all())
    else:          # then the counts must be identical (sums were held to float64 above)
        assert torch.equal(got.counts, want.counts)
    return got, len(off)


def interpreted_path(dtype: torch.dtype) -> str:
    """The id of a dtype's cases: under the interpreter every input takes the float32 dot (assign_triton.launch:
    the interpreter has no 16-bit dot), so the 16-bit cases check casting and accumulation, not the tensor-core
    branch, which runs on a GPU only (bench/gpu_kernels.py)."""
    name = str(dtype).removeprefix("torch.")
    return name if dtype == torch.float32 else f"{name}-inputs-on-the-float32-path"


@pytest.mark.parametrize("dtype", DTYPES, ids=interpreted_path)
@pytest.mark.parametrize("d", [8, 60, 128])
@pytest.mark.parametrize("k", [1, 64, 100, 256])
@pytest.mark.parametrize("n", [0, 1, 127, 4099])
def test_matches_reference(n, k, d, dtype, rng):
    x = torch.randn(n, d, generator=rng).to(dtype)
    c = torch.randn(k, d, generator=rng).to(dtype)
    compare_with_reference(x, c)


def test_near_ties_are_the_only_disagreements(rng):
    # Codes in pairs 1e-6 apart make near-ties common; whatever either backend picks must be
    # one of the pair (check_assignment) and every disagreement must be within rounding.
    base = torch.randn(32, 64, generator=rng)
    c = torch.cat([base, base + 1e-6 * torch.randn(32, 64, generator=rng)])
    x = base.repeat_interleave(40, 0) + 0.01 * torch.randn(32 * 40, 64, generator=rng)
    got, _ = compare_with_reference(x, c, max_near_tie_fraction=1.0)
    # The pairs are far closer than float32 rounding of |c|^2, so many rows miss the oracle's
    # choice: the case this test exists for did occur.
    assert check_assignment(x, c, got, max_near_tie_fraction=1.0) > 0


def test_exact_ties_go_to_the_lowest_index(rng):
    # Identical codes 5, 9 (same K tile), 70 (next tile) and 200 (a later one): rows equal to
    # them all pick 5.
    c = torch.randint(-4, 5, (256, 16), generator=rng).float()
    c[[9, 70, 200]] = c[5].clone()
    x = c[5].repeat(150, 1)
    for dtype in DTYPES:
        got = assign_triton(x.to(dtype), c.to(dtype))
        assert bool((got.indices == 5).all()), dtype
        assert got.counts[5] == 150 and got.counts.sum() == 150
    # Equidistant from two different codes.
    c2 = torch.full((70, 3), 10.0)
    c2[1, 0], c2[66, 0] = 1.0, -1.0
    assert assign_triton(torch.zeros(7, 3), c2).indices.tolist() == [1] * 7


def test_non_contiguous_inputs(rng):
    x = torch.randn(40, 900, generator=rng).T           # [900, 40], column-major
    c = torch.randn(200, 80, generator=rng)[::2, ::2]   # [100, 40], strided both ways
    assert not x.is_contiguous() and not c.is_contiguous()
    got, _ = compare_with_reference(x, c)
    assert torch.equal(got.indices, assign_triton(x.contiguous(), c.contiguous()).indices)


def test_mixed_input_dtypes(rng):
    compare_with_reference(torch.randn(300, 32, generator=rng).bfloat16(), torch.randn(64, 32, generator=rng))
    compare_with_reference(torch.randn(300, 32, generator=rng), torch.randn(64, 32, generator=rng).half())


def test_without_sums(rng):
    x, c = torch.randn(700, 24, generator=rng), torch.randn(90, 24, generator=rng)
    got, _ = compare_with_reference(x, c, with_sums=False)
    assert got.sums is None


def test_row_with_nan_gets_code_zero():
    x = torch.randn(70, 8)
    x[66, 1] = float("nan")
    assert assign_triton(x, torch.randn(100, 8)).indices[66] == 0


def test_counts_are_exact_when_many_rows_share_a_code():
    # All 4099 rows on one code: the per-program histograms must add up exactly.
    c = torch.randn(100, 16)
    x = c[37].repeat(4099, 1)
    got = assign_triton(x, c)
    assert got.counts[37] == 4099 and got.counts.sum() == 4099
    check_assignment(x, c, got)


def test_supports():
    assert supports(torch.empty(3, 1024))
    assert not supports(torch.empty(3, 1025))   # wider than the register tile: the reference's job
