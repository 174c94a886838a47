"""The fused Triton kernel for nearest-code assignment, and its PyTorch-facing wrapper.

One pass over x: each program takes tiles of BLOCK_N rows, holds the tile in registers while
the codebook streams through in tiles of BLOCK_K codes (tl.dot for the cross term), keeps a
running min / argmin per row, then writes the indices, adds the rows into the per-code sums
and adds the indices into a per-program histogram. The grid is persistent (a few programs per
SM) so each program flushes its histogram once, K atomics per program instead of one per row.
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
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
    NUM_BINS: tl.constexpr,                  # power of two >= K: the histogram width
    WITH_SUMS: tl.constexpr,
    DOT_IN_FP32: tl.constexpr,               # cast tiles to float32 before tl.dot
    INPUT_PRECISION: tl.constexpr,           # tl.dot precision for float32 operands; None: default
):
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d < D
    histogram = tl.zeros([NUM_BINS], dtype=tl.int32)

    for tile in range(tl.program_id(0), num_tiles, tl.num_programs(0)):
        offs_n = tile * BLOCK_N + tl.arange(0, BLOCK_N)
        n_ok = offs_n < N
        rows = offs_n.to(tl.int64)   # row * stride overflows int32 beyond 2^31 elements of x
        x = tl.load(x_ptr + rows[:, None] * stride_xn + offs_d[None, :] * stride_xd,
                    mask=n_ok[:, None] & d_ok[None, :], other=0.0)
        x_dot = x
        if DOT_IN_FP32:
            x_dot = x.to(tl.float32)

        best = tl.full([BLOCK_N], float("inf"), dtype=tl.float32)
        best_idx = tl.zeros([BLOCK_N], dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            k_ok = offs_k < K
            c = tl.load(codebook_ptr + offs_k[:, None] * stride_ck + offs_d[None, :] * stride_cd,
                        mask=k_ok[:, None] & d_ok[None, :], other=0.0)
            c_dot = c
            if DOT_IN_FP32:
                c_dot = c.to(tl.float32)
            cross = tl.dot(x_dot, tl.trans(c_dot), input_precision=INPUT_PRECISION)  # [BLOCK_N, BLOCK_K]
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
        histogram += tl.histogram(best_idx, NUM_BINS, mask=n_ok)
        if WITH_SUMS:
            tl.atomic_add(sums_ptr + best_idx[:, None] * D + offs_d[None, :], x.to(tl.float32),
                          mask=n_ok[:, None] & d_ok[None, :], sem="relaxed")

    bins = tl.arange(0, NUM_BINS)
    tl.atomic_add(counts_ptr + bins, histogram.to(tl.int64), mask=(bins < K) & (histogram > 0),
                  sem="relaxed")


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return isinstance(_assign_kernel, InterpretedFunction)


def supports(x: torch.Tensor) -> bool:
    """Whether the kernel can run on x at all: a CUDA tensor, or any tensor under the interpreter."""
    return x.dim() == 2 and x.shape[1] <= MAX_D and (x.is_cuda or interpreting())


def launch_config(n: int, k: int, d: int, device: torch.device) -> dict:
    """Block sizes and grid for an assignment of [n, d] rows to k codes.

    Heuristics, not yet tuned on a GPU: about 8K x values per program's register tile, codes
    in tiles of 64, a persistent grid of 4 programs per SM (the interpreter runs programs one
    after another, so there a few suffice). bench/gpu_kernels.py --sweep tries alternatives.
    """
    block_d = max(16, triton.next_power_of_2(d))
    block_n = max(16, min(128, 8192 // block_d))
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    return {
        "BLOCK_N": block_n,
        "BLOCK_K": max(16, min(64, triton.next_power_of_2(k))),
        "BLOCK_D": block_d,
        "NUM_BINS": max(32, triton.next_power_of_2(k)),
        "programs": 4 * sms,
        "num_warps": 4,
    }


def assign_triton(x: torch.Tensor, codebook: torch.Tensor, with_sums: bool = True,
                  config: dict | None = None) -> Assignment:
    """Nearest code per row of x [N, D] in codebook [K, D], fused; same contract as assign_reference.

    config overrides launch_config's choices (for tuning sweeps); results do not depend on it.
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
    c_sq = squared_norms(codebook)
    indices = torch.empty(n, dtype=torch.int64, device=x.device)
    counts = torch.zeros(k, dtype=torch.int64, device=x.device)
    sums = torch.zeros(k, d, dtype=torch.float32, device=x.device) if with_sums else None
    if n == 0:
        return Assignment(indices, counts, sums)

    launch(x, codebook, c_sq, indices, counts, sums, {**launch_config(n, k, d, x.device), **(config or {})})
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
    # Tensor-core dot on the native 16-bit dtype only when both sides share it, and never in the
    # interpreter, which has no bf16 dot.
    dot_in_fp32 = interpreted or x.dtype != codebook.dtype or x.dtype == torch.float32
    # tf32x3 recovers float32 accuracy from three tf32 products; 16-bit operands keep the default.
    precision = "ieee" if interpreted else "tf32x3" if dot_in_fp32 else None
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
        num_warps=cfg["num_warps"],
    )
    return (min(num_tiles, cfg["programs"]),), args, meta
