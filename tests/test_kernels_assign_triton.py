"""The Triton kernel (kernels/assign_triton.py) against the PyTorch reference.

By default on CPU: conftest.py sets TRITON_INTERPRET=1, so the kernel runs through Triton's
interpreter, the same kernel source the GPU compiles, on small shapes. With SDA_TEST_DEVICE=cuda
(and TRITON_INTERPRET unset) the same tests run the compiled kernel on CUDA tensors, where
same-dtype 16-bit inputs take the tensor-core dot and float32 tf32x3: bench/gpu_check.py runs
them so on a GPU machine.
"""

import os

import pytest
import torch

from sda.kernels import backend
from sda.kernels.assign_triton import assign_triton, dot_mode, interpreting, supports
from sda.kernels.common import Assignment
from sda.kernels.reference import assign_reference
from sda.kernels.testing import check_assignment, oracle_distances, rounding_bound

DEVICE = torch.device(os.environ.get("SDA_TEST_DEVICE", "cpu"))
if DEVICE.type == "cuda" and (interpreting() or not torch.cuda.is_available()):
    # Asked for the GPU: skipping would pass a run that checked nothing.
    raise RuntimeError("SDA_TEST_DEVICE=cuda needs a CUDA device and TRITON_INTERPRET unset (or 0)")
pytestmark = pytest.mark.skipif(DEVICE.type == "cpu" and not interpreting(),
                                reason="on CPU the kernel needs TRITON_INTERPRET=1 set before triton is imported")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def on_device(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """The tests' inputs, drawn on CPU from the seeded generator, on the device under test."""
    return [t.to(DEVICE) for t in tensors]


def on_cpu(a: Assignment) -> Assignment:
    return Assignment(*(t.cpu() if t is not None else None for t in a))


def compare_with_reference(x, codebook, with_sums=True, max_near_tie_fraction=0.01):
    """Kernel vs reference and oracle: indices equal or near-ties, counts exact, sums to rounding.
    Both backends run on the inputs' device; the comparison runs on CPU."""
    got = on_cpu(assign_triton(x, codebook, with_sums))
    want = on_cpu(assign_reference(x, codebook, with_sums))
    x, codebook = x.cpu(), codebook.cpu()
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


def dot_path(dtype: torch.dtype) -> str:
    """The id of a dtype's cases: the dot the kernel takes for same-dtype inputs (assign_triton.dot_mode). Under
    the interpreter every input takes the float32 'ieee' dot (it has no 16-bit dot), so there the 16-bit cases
    check casting and accumulation only; on CUDA 16-bit inputs take the tensor cores and float32 tf32x3."""
    name = str(dtype).removeprefix("torch.")
    in_fp32, precision = dot_mode(dtype, dtype, interpreting())
    return f"{name}-{precision}-dot" if in_fp32 else f"{name}-tensor-core-dot"


@pytest.mark.parametrize("dtype", DTYPES, ids=dot_path)
@pytest.mark.parametrize("d", [8, 60, 128])
@pytest.mark.parametrize("k", [1, 64, 100, 256])
@pytest.mark.parametrize("n", [0, 1, 127, 4099])
def test_matches_reference(n, k, d, dtype, rng):
    x, c = on_device(torch.randn(n, d, generator=rng).to(dtype), torch.randn(k, d, generator=rng).to(dtype))
    compare_with_reference(x, c)


def test_near_ties_are_the_only_disagreements(rng):
    # Codes in pairs 1e-6 apart make near-ties common; whatever either backend picks must be
    # one of the pair (check_assignment) and every disagreement must be within rounding.
    base = torch.randn(32, 64, generator=rng)
    c = torch.cat([base, base + 1e-6 * torch.randn(32, 64, generator=rng)])
    x = base.repeat_interleave(40, 0) + 0.01 * torch.randn(32 * 40, 64, generator=rng)
    got, _ = compare_with_reference(*on_device(x, c), max_near_tie_fraction=1.0)
    # The pairs are far closer than float32 rounding of |c|^2, so many rows miss the oracle's
    # choice: the case this test exists for did occur.
    assert check_assignment(x, c, got, max_near_tie_fraction=1.0) > 0


def test_exact_ties_go_to_the_lowest_index(rng):
    # Identical codes 5, 9 (same K tile), 70 (next tile) and 200 (a later one): rows equal to
    # them all pick 5.
    c = torch.randint(-4, 5, (256, 16), generator=rng).float()
    c[[9, 70, 200]] = c[5].clone()
    x, c = on_device(c[5].repeat(150, 1), c)
    for dtype in DTYPES:   # on CUDA the 16-bit ones on the tensor cores: integers are exact there too
        got = assign_triton(x.to(dtype), c.to(dtype))
        assert bool((got.indices == 5).all()), dtype
        assert got.counts[5] == 150 and got.counts.sum() == 150
    # Equidistant from two different codes.
    c2 = torch.full((70, 3), 10.0)
    c2[1, 0], c2[66, 0] = 1.0, -1.0
    assert assign_triton(*on_device(torch.zeros(7, 3), c2)).indices.tolist() == [1] * 7


def test_non_contiguous_inputs(rng):
    # Made non-contiguous on the device: copying a strided tensor there would make it contiguous.
    x = torch.randn(40, 900, generator=rng).to(DEVICE).T           # [900, 40], column-major
    c = torch.randn(200, 80, generator=rng).to(DEVICE)[::2, ::2]   # [100, 40], strided both ways
    assert not x.is_contiguous() and not c.is_contiguous()
    got, _ = compare_with_reference(x, c)
    assert torch.equal(got.indices, assign_triton(x.contiguous(), c.contiguous()).indices)


def test_mixed_input_dtypes(rng):
    # Mixed dtypes take the float32 dot against a float32 codebook (assign_triton.kernel_arguments).
    compare_with_reference(*on_device(torch.randn(300, 32, generator=rng).bfloat16(),
                                      torch.randn(64, 32, generator=rng)))
    compare_with_reference(*on_device(torch.randn(300, 32, generator=rng),
                                      torch.randn(64, 32, generator=rng).half()))


def test_without_sums(rng):
    x, c = on_device(torch.randn(700, 24, generator=rng), torch.randn(90, 24, generator=rng))
    got, _ = compare_with_reference(x, c, with_sums=False)
    assert got.sums is None


def test_row_with_nan_gets_code_zero():
    x = torch.randn(70, 8)
    x[66, 1] = float("nan")
    assert assign_triton(*on_device(x, torch.randn(100, 8))).indices[66] == 0


def test_counts_are_exact_when_many_rows_share_a_code():
    # All 4099 rows on one code: the per-program histograms must add up exactly.
    c = torch.randn(100, 16)
    x = c[37].repeat(4099, 1)
    got = assign_triton(*on_device(x, c))
    assert got.counts[37] == 4099 and got.counts.sum() == 4099
    check_assignment(x, c, got)


def test_supports():
    assert supports(torch.empty(3, 1024, device=DEVICE))
    assert not supports(torch.empty(3, 1025, device=DEVICE))   # wider than the register tile: the reference's job
    assert supports(torch.empty(3, 8)) == interpreting()        # a CPU tensor: only through the interpreter


def test_dispatch_picks_the_kernel_on_cuda_only(monkeypatch):
    # What the quantizer gets by default: the kernel for CUDA tensors, the reference elsewhere,
    # even where the interpreter could run the kernel.
    monkeypatch.delenv("SDA_KERNELS", raising=False)
    assert backend(torch.empty(3, 64, device=DEVICE)) == ("triton" if DEVICE.type == "cuda" else "torch")
