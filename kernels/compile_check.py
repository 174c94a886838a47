"""_assign_kernel compiled ahead of time for NVIDIA GPUs, on a machine without one: registers, spills, shared memory.

    python -m sda.kernels.compile_check [--arch 80 90 100] [--jobs 2] [--cache-dir DIR] [--json]

prints one row per specialisation that assign_triton.launch can start (dtypes of x and codebook,
with or without sums, every block configuration launch_config returns over 1 <= D <= MAX_D and
1 <= K <= MAX_K) and exits 1 when any of them spills or needs more shared memory than the target
gives one block. tests/test_kernels_compile_check.py runs it; bench/RESULTS.md records its table.

How: triton.compile with an explicit GPUTarget lowers the kernel to PTX and runs the ptxas bundled
in the triton wheel, so no GPU or CUDA driver is involved (triton only asks the driver for the
target when none is given). Triton keeps ptxas's report to itself and reads registers from the
driver when a kernel is loaded, so measure() runs that ptxas again with -v on the same PTX and
the flags triton 3.8's make_cubin passes, and checks that the cubin is byte for byte triton's.

The interpreter (TRITON_INTERPRET=1, which the tests set) replaces the kernel by an
InterpretedFunction and patches triton.language, after which the code generator no longer
works in that process; compile in a process started without it (the test does, once).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import NamedTuple

import torch
import triton

from . import assign_triton

# Codebook sizes the kernel serves; larger K still runs, but nothing here has checked it.
MAX_K = 4096
DTYPES = ("float32", "float16", "bfloat16")

# Largest shared memory one block may use (the opt-in maximum of dynamic shared memory), from the
# CUDA C++ Programming Guide, "Features and Technical Specifications", table "Technical
# Specifications per Compute Capability": 163 KB for 8.0, 227 KB for 9.0 and 10.0 (KB = 1024 B).
SHARED_LIMIT = {80: 163 * 1024, 90: 227 * 1024, 100: 227 * 1024}
ARCHS = tuple(SHARED_LIMIT)


class Case(NamedTuple):
    """One specialisation: a target and the largest shape of one launch_config bucket."""

    arch: int                 # compute capability, 80 = sm_80
    x_dtype: str
    codebook_dtype: str
    with_sums: bool
    k: int                    # codes
    d: int                    # code dimension

    @property
    def name(self) -> str:
        sums = "sums" if self.with_sums else "nosums"
        return f"sm{self.arch}-{self.x_dtype}-{self.codebook_dtype}-{sums}-K{self.k}-D{self.d}"


class Measure(NamedTuple):
    """What ptxas and triton report for one compiled case."""

    case: Case
    config: dict              # the constexprs and options the kernel was compiled with
    registers: int            # per thread
    spill_stores: int         # bytes
    spill_loads: int          # bytes
    stack: int                # local stack frame, bytes
    shared: int               # shared memory per block, bytes (triton's allocation)

    def problems(self) -> list[str]:
        """Why this case fails the check (empty when it passes)."""
        found = []
        if self.spill_stores or self.spill_loads or self.stack:
            found.append(f"local memory: {self.stack} B stack, {self.spill_stores} B spill stores, "
                         f"{self.spill_loads} B spill loads")
        if self.shared > SHARED_LIMIT[self.case.arch]:
            found.append(f"shared memory {self.shared} B over the {SHARED_LIMIT[self.case.arch]} B "
                         f"a block may use on sm_{self.case.arch}")
        return found


def size_buckets(limit: int) -> list[int]:
    """The largest value of each next_power_of_2 bucket of 1..limit: 1, 2, 4, ..., limit."""
    return [1 << e for e in range(limit.bit_length()) if 1 << e <= limit]


# Rows of the shapes compiled: many tiles' worth, so launch_config sees a large job.
ROWS = 1 << 16


def cases(archs=ARCHS) -> list[Case]:
    """Every specialisation launch can start, one Case each: distinct launch_config results over
    the size buckets, crossed with the dtypes launch passes to the kernel and with_sums."""
    found: dict[tuple, Case] = {}
    for arch in archs:
        for x_dtype in DTYPES:
            for c_dtype in DTYPES:
                # A mixed pair reaches the kernel with a float32 codebook (kernel_arguments):
                # the case is named by the dtypes the kernel sees.
                seen = c_dtype if c_dtype == x_dtype else "float32"
                for with_sums in (True, False):
                    for k in size_buckets(MAX_K):
                        for d in size_buckets(assign_triton.MAX_D):
                            case = Case(arch, x_dtype, seen, with_sums, k, d)
                            key = specialisation_key(case)
                            # Buckets are ascending, so the largest shape of a configuration wins.
                            found[key] = case
    return list(found.values())


def kernel_arguments(case: Case):
    """assign_triton.kernel_arguments for a case, on meta tensors (shapes and dtypes, no memory)."""
    n = ROWS
    meta = torch.device("meta")
    x = torch.empty(n, case.d, dtype=getattr(torch, case.x_dtype), device=meta)
    codebook = torch.empty(case.k, case.d, dtype=getattr(torch, case.codebook_dtype), device=meta)
    c_sq = torch.empty(case.k, device=meta)
    indices = torch.empty(n, dtype=torch.int64, device=meta)
    counts = torch.empty(case.k, dtype=torch.int64, device=meta)
    sums = torch.empty(case.k, case.d, device=meta) if case.with_sums else None
    float32_dot, _ = assign_triton.dot_mode(x.dtype, codebook.dtype, interpreted=False)
    cfg = assign_triton.launch_config(n, case.k, case.d, meta, float32_dot)
    return assign_triton.kernel_arguments(x, codebook, c_sq, indices, counts, sums, cfg, interpreted=False)


def specialisation_key(case: Case) -> tuple:
    """What decides the compiled kernel, short of the integer arguments' alignment: the target,
    the dtypes reaching the kernel, its constexprs and launch options."""
    _, args, meta = kernel_arguments(case)
    dtypes = tuple(str(a.dtype) for a in args if isinstance(a, torch.Tensor))
    return (case.arch, dtypes, tuple(sorted(meta.items())))


def _ptxas(arch: int) -> str:
    knobs = triton.knobs.nvidia
    return (knobs.ptxas_blackwell if arch >= 100 else knobs.ptxas).path


def _gpu_name(arch: int) -> str:
    # As triton's sm_arch_from_capability: the arch-specific "a" variant from sm_90 on.
    return f"sm_{arch}{'a' if arch >= 90 else ''}"


def compile_case(case: Case):
    """triton.compile for one case, target given explicitly: needs no GPU or driver. Returns
    (the CompiledKernel, the config it was compiled with)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature

    kernel = assign_triton._assign_kernel
    if not isinstance(kernel, JITFunction):
        raise RuntimeError("compile_check: TRITON_INTERPRET=1 is set in this process; compile in one without it")
    target = GPUTarget("cuda", case.arch, 32)
    backend = make_backend(target)
    _, args, meta = kernel_arguments(case)
    # The binder JITFunction.run uses, so the signature and the integer arguments' specialisation
    # (alignment, == 1) are exactly what a launch on that GPU would compile.
    binder = create_function_from_signature(kernel.signature, kernel.params, backend)
    bound, specialization, options = binder(*args, **meta)
    options, signature, constexprs, attrs = kernel._pack_args(backend, meta, bound, specialization, options)
    compiled = triton.compile(ASTSource(kernel, signature, constexprs, attrs), target=target,
                              options=options.__dict__)
    return compiled, {k: v for k, v in meta.items()}


PTXAS_REPORT = re.compile(
    r"(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, (?P<loads>\d+) bytes spill loads"
    r".*?Used (?P<regs>\d+) registers", re.S)


def ptxas_report(ptx: str, arch: int, expected_cubin: bytes) -> dict:
    """ptxas -v on ptx with the flags triton 3.8's make_cubin passes: registers, spills, stack."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, "kernel.ptx"), Path(tmp, "kernel.cubin")
        src.write_text(ptx)
        run = subprocess.run([_ptxas(arch), "-lineinfo", "-v", "--regAllocOptLevel=2",
                              f"--gpu-name={_gpu_name(arch)}", str(src), "-o", str(out)],
                             capture_output=True, text=True, check=True)
        if out.read_bytes() != expected_cubin:
            raise RuntimeError("compile_check: ptxas -v built a different cubin from triton's; "
                               "triton's make_cubin flags have changed, update ptxas_report")
    m = PTXAS_REPORT.search(run.stderr)
    if m is None:
        raise RuntimeError(f"compile_check: cannot read ptxas's report:\n{run.stderr}")
    return {"registers": int(m["regs"]), "spill_stores": int(m["stores"]), "spill_loads": int(m["loads"]),
            "stack": int(m["stack"])}


def measure(case: Case) -> Measure:
    """Compile one case and read its resources; ptxas's report is cached beside triton's cubin."""
    compiled, config = compile_case(case)
    report_path = Path(triton.knobs.cache.dir, "ptxas-v", f"{compiled.hash}.json")
    if report_path.exists():
        report = json.loads(report_path.read_text())
    else:
        report = ptxas_report(compiled.asm["ptx"], case.arch, compiled.asm["cubin"])
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(json.dumps(report))
    config = {**config, "num_stages": compiled.metadata.num_stages}
    return Measure(case, config, shared=compiled.metadata.shared, **report)


def measure_all(case_list: list[Case], jobs: int = 2) -> list[Measure]:
    """measure over case_list in a pool of jobs processes (compiling is single-threaded)."""
    if jobs <= 1:
        return [measure(c) for c in case_list]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(measure, case_list, chunksize=4))


def table(measures: list[Measure]) -> str:
    """A Markdown table: one row per case, its config, registers, spills, stack, shared memory."""
    rows = ["| target | x | codebook | sums | K | D | BLOCK_N x BLOCK_K x BLOCK_D | bins | warps | stages "
            "| registers | spill st/ld B | stack B | shared KiB | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in measures:
        c, cfg = m.case, m.config
        verdict = "; ".join(m.problems()) or "ok"
        rows.append(
            f"| sm_{c.arch} | {c.x_dtype} | {c.codebook_dtype} | {'yes' if c.with_sums else 'no'} | {c.k} | {c.d} "
            f"| {cfg['BLOCK_N']} x {cfg['BLOCK_K']} x {cfg['BLOCK_D']} | {cfg['NUM_BINS'] or 'atomics'} "
            f"| {cfg['num_warps']} | {cfg['num_stages']} | {m.registers} | {m.spill_stores}/{m.spill_loads} "
            f"| {m.stack} | {m.shared / 1024:.1f} | {verdict} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sda.kernels.compile_check", description=__doc__.split("\n")[0])
    parser.add_argument("--arch", type=int, nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--cache-dir", help="triton's cache (TRITON_CACHE_DIR); default: triton's own")
    parser.add_argument("--json", action="store_true", help="one JSON object per case instead of the table")
    args = parser.parse_args(argv)
    if args.cache_dir:
        os.environ["TRITON_CACHE_DIR"] = args.cache_dir   # read by the pool's processes too
        triton.knobs.cache.dir = args.cache_dir
    measures = measure_all(cases(args.arch), args.jobs)
    if args.json:
        for m in measures:
            print(json.dumps({**m._asdict(), "case": m.case._asdict(), "name": m.case.name,
                              "problems": m.problems()}))
    else:
        print(table(measures))
    return 1 if any(m.problems() for m in measures) else 0


if __name__ == "__main__":
    sys.exit(main())
