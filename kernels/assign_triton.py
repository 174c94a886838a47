"""The fused Triton kernel for nearest-code assignment, and its PyTorch-facing wrapper.

One pass over x: each program takes tiles of BLOCK_N rows; the codebook streams through in
tiles of BLOCK_K codes, and for each, tl.dot takes the cross term over D in slices of BLOCK_D;
a running min / argmin per row follows. Then the program writes the indices, adds the rows into
the per-code sums and counts the indices: into a per-program histogram for small K, flushed once
(K atomics per program instead of one per row), by one atomic per row for large K. The grid is
persistent (a few programs per SM).
No N x K matrix exists anywhere.

The specification is kernels/reference.py; tests/test_kernels_assign_triton.py holds this
kernel to it, on CPU through the Triton interpreter (TRITON_INTERPRET=1 before import).

Precision: distances accumulate in float32. Same-dtype 16-bit inputs use the tensor cores
directly (a product of two fp16/bf16 values is exact in float32); float32 inputs use tf32x3,
three tf32 products that recover float32 accuracy. The block sizes are heuristics that have not
yet been tuned on a GPU (bench/gpu_kernels.py --sweep prints the alternatives).
"""

import contextlib

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from .common import Assignment, squared_norms, validate

# Largest code dimension the kernel keeps in registers; wider x goes to the reference.
MAX_D = 1024


@triton.jit
def _assign_kernel(
    x_ptr, codebook_ptr, c_sq_ptr,           # inputs: x [N, D], codebook [K, D], ||c||^2 [K] float32
    indices_ptr, counts_ptr, sums_ptr,       # outputs: [N] int64, [K] int64, [K, D] float32 (zeroed)
    N, K, D,
    stride_xn, stride_xd, stride_ck, stride_cd,
    num_tiles,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,                   # the slice of D one tl.dot takes; D is walked in slices
    NUM_BINS: tl.constexpr,                  # power of two >= K: the histogram width; 0: count by atomics
    WITH_SUMS: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,               # cast tiles to float32 before tl.dot
    INPUT_PRECISION: tl.constexpr,           # tl.dot precision for float32 operands; None: default
):
    if NUM_BINS > 0:
        histogram = tl.zeros([NUM_BINS], dtype=tl.int32)

    for tile in range(tl.program_id(0), num_tiles, tl.num_programs(0)):
        offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        rows = offs_n.to(tl.int64)   # row * stride overflows int32 beyond 2^31 elements of x

        best = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
        best_idx = tl.zeros([BLOCK_N], dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < K
            # x . c over D in slices of BLOCK_D: registers and shared memory then depend on the
            # slice, not on D (holding all of x's row tile spilled at D >= 256, compile_check).
            # The x slices come again for every code tile, from L1/L2 as in any tiled matmul.
            cross = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
            for d0 in range(0, D, BLOCK_D):
                offs_d = d0 + tl.arange(0, BLOCK_D)
                d_ok = offs_d < D
                x = tl.load(x_ptr + rows[:, None] * stride_xn + offs_d[None, :] * stride_xd,
                            mask=n_ok[:, None] & d_ok[None, :], other=0.0)
                c = tl.load(codebook_ptr + offs_k[:, None] * stride_ck + offs_d[None, :] * stride_cd,
                            mask=k_ok[:, None] & d_ok[None, :], other=0.0)
                if DOT_IN_FP32:
                    x = x.to(tl.float32)
                    c = c.to(tl.float32)
                cross = tl.dot(x, tl.trans(c), cross, input_precision=INPUT_PRECISION)  # [BLOCK_N, BLOCK_K]
            # Padding codes get +inf, so they can never win.
            c_sq = tl.load(c_sq_ptr + offs_k, mask=k_ok, other=float("inf"))
            dist = c_sq[None, :] - 2.0 * cross
            # A row holding NaN would compare false everywhere; as +inf it never beats the
            # initial best and keeps index 0, as in the reference.
            dist = tl.where(dist == dist, dist, float("inf"))
            tile_min, tile_arg = tl.min(dist, axis=1, return_indices=True,
                                        return_indices_tie_break_left=True)
            # Strict <: tiles arrive in increasing k, so an equal later minimum never displaces
            # an earlier one and exact ties keep the lowest index.
            better = tile_min < best
            best = tl.where(better, tile_min, best)
            best_idx = tl.where(better, tile_arg + k0, best_idx)

        tl.store(indices_ptr + offs_n, best_idx.to(tl.int64), mask=n_ok)
        if NUM_BINS > 0:
            histogram += tl.histogram(best_idx, NUM_BINS, mask=n_ok)
        else:
            tl.atomic_add(counts_ptr + best_idx, tl.full([BLOCK_N], 1, dtype=tl.int64), mask=n_ok,
                          sem="relaxed")
        if WITH_SUMS:
            for d0 in range(0, D, BLOCK_D):
                offs_d = d0 + tl.arange(0, BLOCK_D)
                d_ok = offs_d < D
                mask = n_ok[:, None] & d_ok[None, :]
                x = tl.load(x_ptr + rows[:, None] * stride_xn + offs_d[None, :] * stride_xd,
                            mask=mask, other=0.0)
                tl.atomic_add(sums_ptr + best_idx[:, None] * D + offs_d[None, :], x.to(tl.float32),
                              mask=mask, sem="relaxed")

    if NUM_BINS > 0:
        bins = tl.arange(0, NUM_BINS)
        tl.atomic_add(counts_ptr + bins, histogram.to(tl.int64), mask=(bins < K) & (histogram > 0),
                      sem="relaxed")


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return isinstance(_assign_kernel, InterpretedFunction)


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel can run on x at all: a CUDA tensor, or any tensor under the interpreter."""
    return x.dim() == 2 and x.shape[1] <= MAX_D and (x.is_cuda or interpreting())


# Codebooks up to this many codes are counted in a per-program histogram held in registers and
# flushed once per program; larger ones by one atomic per row. A histogram of 4096 bins is 32
# registers a thread at 4 warps and spilled (bench/RESULTS.md, "compiled ahead of time"); one
# atomic per row costs 1/D of the per-code sums' atomics.
HISTOGRAM_MAX_K = 64


def launch_config(n: int, k: int, d: int, device: torch.device, float32_dot: bool = True) -> dict:
    """Block sizes, histogram width, grid and launch options for [n, d] rows against k codes.

    float32_dot: the kernel's dot takes float32 operands (tf32x3), as dot_mode says; False for
    same-dtype 16-bit inputs on the tensor cores. The one place these are decided;
    kernels/compile_check.py compiles every configuration this returns for sm_80 / sm_90 / sm_100
    and fails on spills or shared memory over a block's limit. What its figures chose
    (bench/RESULTS.md, "compiled ahead of time"), at 4 warps:
      BLOCK_N 64: 128 rows of float32 operands used all 255 registers and spilled.
      BLOCK_D a slice of D, walked in a loop: a whole row of x per tile spilled from D 256 and
        needed 256 KiB to 896 KiB of shared memory; a slice keeps both independent of D.
      16-bit tensor-core dot, 64 x 64 x 64 in 2 pipeline stages: 115-195 registers, 16-32 KiB
        shared; with triton's default 3 stages sm_80 and sm_100 spilled 4-8 B without sums. Below
        a 64-wide D slice, 3 stages: in 2, sm_80 spilled 4 B at K 32, D 32 with sums (96 registers;
        8 warps or 32-row tiles moved the spill to other shapes).
      float32 dot (tf32x3 splits each operand in two), 64 x 32 x 16 in 3 stages: 86 (sm_90) / 128
        (sm_80) registers; 64 x 64 x 64 spilled 4-564 B, 64 x 64 x 32 and 64 x 32 x 32 still a few
        bytes on sm_80.
    Not yet timed on a GPU: bench/gpu_kernels.py --sweep tries alternatives. The grid is persistent,
    4 programs per SM (the interpreter runs programs one after another, so there a few suffice).
    """
    max_block_k, max_block_d = (32, 16) if float32_dot else (64, 64)
    block_d = max(16, min(max_block_d, triton.next_power_of_2(d)))
    stages = 3 if float32_dot or block_d < 64 else 2
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    return {
        "BLOCK_N": 64,
        "BLOCK_K": max(16, min(max_block_k, triton.next_power_of_2(k))),
        "BLOCK_D": block_d,
        "NUM_BINS": max(32, triton.next_power_of_2(k)) if k <= HISTOGRAM_MAX_K else 0,
        "programs": 4 * sms,
        "num_warps": 4,
        "num_stages": stages,
    }


def dot_mode(x_dtype: torch.dtype, codebook_dtype: torch.dtype, interpreted: bool) -> tuple[bool, str | None]:
    """(DOT_IN_FP32, INPUT_PRECISION) for inputs of these dtypes: the kernel's dot precision."""
    # Tensor-core dot on the native 16-bit dtype only when both sides share it, and never in the
    # interpreter, which has no bf16 dot.
    dot_in_fp32 = interpreted or x_dtype != codebook_dtype or x_dtype == torch.float32
    # tf32x3 recovers float32 accuracy from three tf32 products; 16-bit operands keep the default.
    precision = "ieee" if interpreted else "tf32x3" if dot_in_fp32 else None
    return dot_in_fp32, precision


def assign_triton(x: torch.Tensor, codebook: torch.Tensor, with_sums: bool = True,
                  config: dict | None = None, check_finite: bool = True) -> Assignment:
    """Nearest code per row of x [N, D] in codebook [K, D], fused; same contract as assign_reference.

    config overrides launch_config's choices (for tuning sweeps); results do not depend on it.
    check_finite: see common.squared_norms.
    """
    validate(x, codebook)
    if not supports(x):
        raise ValueError(
            f"assign: the Triton kernel needs a CUDA tensor with D <= {MAX_D} (or TRITON_INTERPRET=1 "
            f"set before triton is imported), got a {x.device.type} tensor with D={x.shape[1]}"
        )
    x, codebook = x.detach(), codebook.detach()
    n, d = x.shape
    k = codebook.shape[0]
    c_sq = squared_norms(codebook, check_finite)
    indices = torch.empty(n, dtype=torch.int64, device=x.device)
    counts = torch.zeros(k, dtype=torch.int64, device=x.device)
    sums = torch.zeros(k, d, dtype=torch.float32, device=x.device) if with_sums else None
    if n == 0:
        return Assignment(indices, counts, sums)

    cfg = launch_config(n, k, d, x.device, dot_mode(x.dtype, codebook.dtype, interpreting())[0])
    launch(x, codebook, c_sq, indices, counts, sums, {**cfg, **(config or {})})
    return Assignment(indices, counts, sums)


def launch(x, codebook, c_sq, indices, counts, sums, cfg: dict) -> None:
    """Run the kernel into preallocated outputs (counts and sums zeroed; sums may be None).

    assign_triton's body without validation or allocation; bench/gpu_kernels.py times it alone.
    """
    grid, args, meta = kernel_arguments(x, codebook, c_sq, indices, counts, sums, cfg, interpreting())
    # Triton launches on the current CUDA device, which need not be x's.
    with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
        _assign_kernel[grid](*args, **meta)


def kernel_arguments(x, codebook, c_sq, indices, counts, sums, cfg: dict, interpreted: bool):
    """(grid, positional arguments, constexprs and launch options) of one kernel launch.

    The one place that turns tensors and a launch_config into a specialisation of _assign_kernel:
    launch runs it, kernels/compile_check.py compiles it ahead of time (interpreted=False there,
    whatever this process runs under).
    """
    n, d = x.shape
    k = codebook.shape[0]
    num_tiles = triton.cdiv(n, cfg["BLOCK_N"])
    # Mixed dtypes take the float32 dot anyway; a float32 codebook (K x D, exact from 16 bits)
    # makes each mix one of two kernels, x in 16 bits against float32 codes, not six.
    if x.dtype != codebook.dtype:
        codebook = codebook.float()
    dot_in_fp32, precision = dot_mode(x.dtype, codebook.dtype, interpreted)
    args = (
        x, codebook, c_sq, indices, counts, sums if sums is not None else counts,
        n, k, d,
        x.stride(0), x.stride(1), codebook.stride(0), codebook.stride(1),
        num_tiles,
    )
    meta = dict(
        BLOCK_N=cfg["BLOCK_N"], BLOCK_K=cfg["BLOCK_K"], BLOCK_D=cfg["BLOCK_D"],
        NUM_BINS=cfg["NUM_BINS"],
        WITH_SUMS=sums is not None, DOT_IN_FP32=dot_in_fp32,
        INPUT_PRECISION=precision,
        num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
    )
    return (min(num_tiles, cfg["programs"]),), args, meta
