"""GPU benchmark of the fused assignment kernel: check it, then time it against the usual way.

    pip install --no-deps --no-build-isolation -e .    # once, on the GPU machine (works offline)
    python bench/gpu_kernels.py                          # check, then the table
    python bench/gpu_kernels.py --sweep                  # also time other launch configurations
    TRITON_INTERPRET=1 python bench/gpu_kernels.py --smoke   # CPU: run this script on tiny shapes
    bench/gpu_check.sh                                   # this table inside the whole GPU check (bench/gpu_check.py)

1. Check, on the device: the Triton kernel against the float64 oracle (sda.kernels.testing) and
   the PyTorch reference, on random data and on exact ties, float32 and bfloat16. Any failure
   stops the script before a single timing is printed.
2. The device's own yardsticks: a device-to-device copy (GB/s, bytes read + written) and a large
   matmul (TFLOP/s) in each dtype, whose ratio says which shapes are memory-bound.
3. For N = 2^20, D in {64, 128}, K in {64, 256, 1024}, float32 and bfloat16: median times from
   triton.testing.do_bench for assign (indices + counts + sums), with_sums=False, and the kernel
   launch alone; achieved GB/s and its share of the copy bandwidth; the speed-up over
   torch.cdist + argmin + bincount.
"""

import argparse
import statistics
import sys
import time

import torch

from sda.kernels import Assignment
from sda.kernels.assign_triton import assign_triton, dot_mode, interpreting, launch, launch_config
from sda.kernels.common import squared_norms
from sda.kernels.testing import check_assignment


def make_timer(device):
    """fn -> median milliseconds: do_bench on CUDA, a few perf_counter runs elsewhere (smoke only)."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=100, return_mode="median")

    def cpu_timer(fn, reps=3):
        fn()
        runs = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs) * 1e3

    return cpu_timer


def random_problem(n, k, d, dtype, device, seed):
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, d, generator=g, device=device).to(dtype)
    c = torch.randn(k, d, generator=g, device=device).to(dtype)
    return x, c


def check(device, shapes):
    """Kernel vs oracle and reference on the device; raises AssertionError on any failure."""
    from sda.kernels.reference import assign_reference

    for n, k, d in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            x, c = random_problem(n, k, d, dtype, device, seed=n + k + d)
            got = assign_triton(x, c)
            near_ties = check_assignment(x, c, got)
            want = assign_reference(x, c)
            differ = int((got.indices != want.indices).sum())
            print(f"check N={n} K={k} D={d} {str(dtype)[6:]}: ok; {near_ties} near-ties off the oracle, "
                  f"{differ} rows differ from the reference")
    # Exact ties: identical codes in one tile, the next tile and a far one; all must pick the first.
    c = torch.randint(-4, 5, (1024, 64), device=device).float()
    c[[9, 70, 900]] = c[5].clone()
    for dtype in (torch.float32, torch.bfloat16):
        got = assign_triton(c[5].repeat(2000, 1).to(dtype), c.to(dtype))
        assert bool((got.indices == 5).all()) and int(got.counts[5]) == 2000, f"ties ({dtype})"
    print("check ties: ok")


def copy_gbps(device, timer, nbytes):
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * nbytes / timer(lambda: dst.copy_(src)) / 1e6


def matmul_tflops(device, dtype, timer, size):
    """Large-matmul throughput; float32 is timed as tf32, the unit tf32x3 spends three of."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return 2 * size**3 / timer(lambda: a @ b) / 1e9
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def kernel_only(x, c, cfg):
    """The launch alone into preallocated outputs, zeroing them as assign would."""
    n, d = x.shape
    k = c.shape[0]
    c_sq = squared_norms(c)
    out = Assignment(torch.empty(n, dtype=torch.int64, device=x.device),
                     torch.zeros(k, dtype=torch.int64, device=x.device),
                     torch.zeros(k, d, dtype=torch.float32, device=x.device))

    def run():
        out.counts.zero_()
        out.sums.zero_()
        launch(x, c, c_sq, out.indices, out.counts, out.sums, cfg)

    return run


def cdist_argmin_bincount(x, c):
    try:
        torch.cdist(x[:2], c)
        xs, cs = x, c
    except RuntimeError:            # no cdist for this dtype on this build: compare in float32
        xs, cs = x.float(), c.float()
    return lambda: torch.bincount(torch.cdist(xs, cs).argmin(dim=1), minlength=c.shape[0])


def sweep_configs(d):
    block_d = max(16, 1 << (d - 1).bit_length())
    for block_n in (32, 64, 128):
        for block_k in (32, 64, 128):
            for warps in (4, 8):
                if block_n * block_d <= 16384:
                    yield {"BLOCK_N": block_n, "BLOCK_K": block_k, "num_warps": warps}


def bench_shape(n, k, d, dtype, device, timer, copy, peak, args):
    """One table row: times, bandwidth and speed-up for x [n, d] against k codes."""
    x, c = random_problem(n, k, d, dtype, device, seed=k + d)
    cfg = launch_config(n, k, d, device, dot_mode(x.dtype, c.dtype, interpreting())[0])
    full = timer(lambda: assign_triton(x, c))
    lean = timer(lambda: assign_triton(x, c, with_sums=False))
    kernel = timer(kernel_only(x, c, cfg))
    cdist = timer(cdist_argmin_bincount(x, c))
    gbps = (n * d * x.element_size() + n * 8) / kernel / 1e6
    intensity = 2 * k * d / (d * x.element_size() + 8)
    bound = "memory" if intensity < peak * 1e3 / copy else "compute"
    if args.sweep:
        for alt in list(sweep_configs(d))[:2 if args.smoke else None]:
            alt_ms = timer(kernel_only(x, c, {**cfg, **alt}))
            print(f"    sweep D={d} K={k} {str(dtype)[6:]} {alt}: {alt_ms:.3f} ms ({kernel / alt_ms:.2f}x the default)")
    return (f"| {str(dtype)[6:]} | {d} | {k} | {bound} | {full:.3f} | {lean:.3f} | {kernel:.3f} "
            f"| {gbps:.0f} | {100 * gbps / copy:.0f}% | {cdist / lean:.1f}x |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1")
    parser.add_argument("--sweep", action="store_true", help="also time other launch configurations")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--no-check", action="store_true",
                        help="skip step 1 (bench/gpu_check.py --smoke: its kernel tests check the kernel)")
    args = parser.parse_args(argv)

    if args.smoke:
        if not interpreting():
            parser.error("--smoke runs the kernel on CPU: set TRITON_INTERPRET=1")
        device, n, dims, sizes = torch.device("cpu"), 256, (64,), (64,)
        check_shapes, copy_bytes, mm_size = [(300, 64, 60)], 1 << 24, 256
    else:
        if not torch.cuda.is_available():
            parser.error("no CUDA device; on CPU use --smoke with TRITON_INTERPRET=1")
        device, n, dims, sizes = torch.device("cuda"), 1 << 20, (64, 128), (64, 256, 1024)
        check_shapes, copy_bytes, mm_size = [(4099, 100, 60), (65536, 1024, 128), (200000, 256, 64)], 2 << 30, 8192
    timer = make_timer(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter)"
    print(f"# {name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}")

    if not args.no_check:
        check(device, check_shapes)

    copy = copy_gbps(device, timer, copy_bytes)
    peak = {torch.float32: matmul_tflops(device, torch.float32, timer, mm_size) / 3,
            torch.bfloat16: matmul_tflops(device, torch.bfloat16, timer, mm_size)}
    print(f"copy {copy:.0f} GB/s (read + write); matmul: tf32/3 {peak[torch.float32]:.1f}, "
          f"bf16 {peak[torch.bfloat16]:.1f} TFLOP/s")

    lines = [
        f"N = {n}; GB/s counts x read once plus indices written; '% copy' is of {copy:.0f} GB/s; "
        "'bound' compares flop/byte with this device's matmul TFLOP/s over copy GB/s.",
        "",
        "| dtype | D | K | bound | assign ms | no sums ms | kernel ms | GB/s | % copy | vs cdist (no sums) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for dtype in (torch.float32, torch.bfloat16):
        for d in dims:
            for k in sizes:
                lines.append(bench_shape(n, k, d, dtype, device, timer, copy, peak[dtype], args))
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
