"""The benchmark scripts run end to end (--smoke): their figures are only ever read after a long run.

A GPU is lent rarely and briefly, so the GPU script must not be debugged on it: this runs every
path of it except the CUDA-only timer on tiny shapes, under the Triton interpreter. The codebook
quality and health dynamics benchmarks train for minutes; their smoke modes train a tiny model
for a few steps.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_gpu_kernels_smoke(tmp_path):
    out = tmp_path / "table.md"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_kernels.py"), "--smoke", "--sweep", "--out", str(out)],
        env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "check ties: ok" in run.stdout
    assert "sweep D=64 K=64" in run.stdout
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| float32", "| bfloat16"))]
    assert len(rows) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script would run the real benchmark")
def test_gpu_kernels_refuses_cpu_without_smoke():
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_kernels.py")],
                         env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "no CUDA device" in run.stderr


def test_codebook_quality_smoke(tmp_path):
    out = tmp_path / "quality.md"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "codebook_quality.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = out.read_text()
    for level in (1, 2, 3):
        assert f"| level {level} utilization, train % |" in report
    assert "| validation reconstruction loss |" in report and "| ms per training step |" in report
    try:
        import vector_quantize_pytorch  # noqa: F401
    except ImportError:
        assert "not installed" in report
    else:
        assert "| sda | vqp | sda vs vqp |" in report and "targets:" in report


def test_ui_overhead_smoke():
    from tests.helpers import CHROMIUM, free_port, skip_or_fail

    if not pathlib.Path(CHROMIUM).exists():
        skip_or_fail(f"ui_overhead smoke: no chromium at {CHROMIUM} (apt-get install chromium)")
    script = ROOT / "bench" / "ui_overhead.py"
    run = subprocess.run([sys.executable, str(script), "--smoke", "--port", str(free_port())],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "| 1 |" in run.stdout and "median ratio" in run.stdout


def test_distributed_cpu_smoke():
    script = ROOT / "bench" / "distributed_cpu.py"
    run = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "| 1 |" in run.stdout and "median engine ratio" in run.stdout


def test_decode_scale_smoke(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "decode_scale.py"), "--smoke", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| 12 |")]
    assert [row[4] for row in rows] == ["one", "one-thread", "pool-late", "pool", "cold", "hit"]
    assert "12 usable" in run.stdout


def test_health_dynamics_smoke(tmp_path):
    out = tmp_path / "dynamics.md"
    script = ROOT / "bench" / "health_dynamics.py"
    run = subprocess.run([sys.executable, str(script), "--smoke", "--variants", "new", "today", "dc0.5",
                          "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = out.read_text()
    assert "| variant | seed | lowest util after warm-up % |" in report and "| **new** | mean |" in report
    assert "| today | 0 |" in report and "| dc0.5 | 0 |" in report and "warm-up steps" in report
    assert "late util % (mean, last 15 windows)" in report
    mean_row = next(line for line in report.splitlines() if line.startswith("| **new** | mean |"))
    assert re.search(r"\| \d+\.\d/\d+\.\d/\d+\.\d \|", mean_row), mean_row  # one L1/L2/L3 cell, averaged


def test_phase_estimates_smoke():
    import importlib.util
    spec = importlib.util.spec_from_file_location("phase_estimates", ROOT / "bench" / "phase_estimates.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "phase_estimates.py"), "--smoke"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| generated |")]
    assert len(rows) == 2 * 2 * len(script.OPTIONS)  # every option, for both log-mels, at 2 and 4 iterations
