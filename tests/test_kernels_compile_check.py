"""kernels/compile_check.py: _assign_kernel compiled ahead of time for sm_80 / sm_90 / sm_100, no GPU needed.

Every specialisation assign_triton.launch can start must compile without spilling to local memory
and within the shared memory a block may use. conftest.py sets TRITON_INTERPRET=1, under which
triton cannot compile, so the whole check runs once, in one process started without it; triton's
cache (and ptxas's reports) persist under build/, so only kernels that changed compile again.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sda.kernels import assign_triton, compile_check
from sda.kernels.compile_check import ARCHS, MAX_K, Case, Measure, cases, size_buckets

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "build" / "triton-aot-cache"


def ptxas_present(arch: int) -> bool:
    return Path(compile_check._ptxas(arch)).is_file()


AVAILABLE = tuple(a for a in ARCHS if ptxas_present(a))
CASES = cases(AVAILABLE)


@pytest.fixture(scope="module")
def measured() -> dict:
    """compile_check --json over every case, by case name."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, "-m", "sda.kernels.compile_check", "--json", "--cache-dir", str(CACHE),
         "--arch", *map(str, AVAILABLE)],
        capture_output=True, text=True, env=env, timeout=1800)
    if run.returncode not in (0, 1):   # 1: some case failed the check, reported per case below
        pytest.fail(f"compile_check crashed:\n{run.stderr[-4000:]}")
    return {r["name"]: r for r in map(json.loads, run.stdout.splitlines())}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_compiles_without_spills_within_shared_memory(case, measured):
    result = measured[case.name]
    assert not result["problems"], f"{case.name} {result['config']}: {'; '.join(result['problems'])}"


@pytest.mark.parametrize("arch", ARCHS)
def test_bundled_ptxas_handles_the_target(arch):
    if not ptxas_present(arch):
        pytest.skip(f"the triton wheel bundles no ptxas for sm_{arch} at {compile_check._ptxas(arch)}")
    assert arch in AVAILABLE


def config_without_grid(k: int, d: int, float32_dot: bool) -> dict:
    cfg = assign_triton.launch_config(compile_check.ROWS, k, d, torch.device("meta"), float32_dot)
    return {key: value for key, value in cfg.items() if key != "programs"}


@pytest.mark.parametrize("float32_dot", [True, False])
def test_every_size_shares_its_buckets_configuration(float32_dot):
    # cases() compiles the largest K and D of each next_power_of_2 bucket; that covers every
    # integer only if launch_config is constant inside a bucket. Checked along each axis.
    for k in size_buckets(MAX_K):
        for d in range(1, assign_triton.MAX_D + 1):
            top = 1 << (d - 1).bit_length()
            assert config_without_grid(k, d, float32_dot) == config_without_grid(k, top, float32_dot), (k, d)
    for d in size_buckets(assign_triton.MAX_D):
        for k in range(1, MAX_K + 1):
            top = 1 << (k - 1).bit_length()
            assert config_without_grid(k, d, float32_dot) == config_without_grid(top, d, float32_dot), (k, d)


def test_cases_are_distinct_and_cover_every_dtype_pair_and_sums():
    keys = [compile_check.specialisation_key(c) for c in CASES]
    assert len(set(keys)) == len(keys)
    # A pair whose launch reaches the kernel as another's (a float32 codebook against float32 or
    # 16-bit rows) is compiled once, under one of the pairs: every pair's key must be among them.
    compiled = set(keys)
    for arch in AVAILABLE:
        for x_dtype in compile_check.DTYPES:
            for codebook_dtype in compile_check.DTYPES:
                for with_sums in (True, False):
                    for k, d in ((1, 1), (300, 200), (MAX_K, assign_triton.MAX_D)):
                        case = Case(arch, x_dtype, codebook_dtype, with_sums, k, d)
                        assert compile_check.specialisation_key(case) in compiled, case.name


def test_a_spill_or_too_much_shared_memory_fails():
    case = Case(80, "float32", "float32", True, 64, 64)
    ok = Measure(case, {}, registers=128, spill_stores=0, spill_loads=0, stack=0, shared=96 * 1024)
    assert ok.problems() == []
    assert ok._replace(spill_stores=4, spill_loads=4, stack=8).problems()
    assert ok._replace(shared=compile_check.SHARED_LIMIT[80] + 1).problems()
    assert not ok._replace(case=case._replace(arch=90), shared=compile_check.SHARED_LIMIT[80] + 1).problems()


def test_size_buckets():
    assert size_buckets(1) == [1]
    assert size_buckets(4096) == [1 << e for e in range(13)]
