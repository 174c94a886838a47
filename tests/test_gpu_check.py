"""bench/gpu_check.sh, the one GPU check: its --smoke run on CPU, so that a GPU's few minutes are never spent
on a bug in the script; and its timeout, which must end a step's whole process group."""

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["1. install", "2. kernel tests", "3. kernel table", "4a. training step, eager",
         "4b. training step, torch.compile"]


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_runs_every_step_and_reports_each_as_passed(tmp_path):
    out = tmp_path / "x.md"
    run = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), "--smoke", "--out", str(out)],
                         env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=400)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    md = out.read_text()
    for title in STEPS:
        assert f"| {title} | pass |" in md, f"summary row of {title!r}:\n{md[:1500]}"
        assert f"## {title}: pass (" in md, f"section of {title!r}"
    assert "| 4c. training step, CUDA graphs | not implemented |" in md
    assert "## 4c. training step, CUDA graphs: not implemented" in md and "host" in md

    sections = dict(re.findall(r"^## (\S+) [^\n]*\n(.*?)(?=^## |\Z)", md, flags=re.S | re.M))
    # 1: the install was pip's dry run, and every module the steps import did import.
    assert "--dry-run: ok" in sections["1."] and "| NO |" not in sections["1."]
    assert "| sda.train.engine | yes |" in sections["1."]
    # 2: the kernel tests ran through the interpreter; one shape in each dtype, by the dot it took.
    passed = int(re.search(r"(\d+) passed, 0 failed or errors, 0 skipped", sections["2."]).group(1))
    assert passed >= 8
    for dot in ("float32-ieee-dot", "float16-ieee-dot", "bfloat16-ieee-dot"):
        assert re.search(rf"\| {dot} \| 1 \| 0 \|", sections["2."]), dot
    # 3: gpu_kernels.py's table, a row per dtype.
    assert len(re.findall(r"^\| (float32|bfloat16) \| 64 \| 64 \|", sections["3."], flags=re.M)) == 2
    # 4: the engine's step timed in each mode: a row of figures, compile through aot_eager on CPU.
    for key, mode in (("4a.", "eager"), ("4b.", "compile")):
        row = re.search(rf"^\| {mode} \| ([\d.]+) \| (\d+), [\d.]+ \| (\d+) \| ([\d.]+) \| ([\d.]+) \|",
                        sections[key], flags=re.M)
        assert row, sections[key]
        assert int(row.group(3)) >= 3 and 0 < float(row.group(4)) <= float(row.group(5))
        assert "kernels: torch; device cpu" in sections[key]
    assert "torch.compile backend aot_eager" in sections["4b."]


def test_a_step_past_its_limit_is_killed_with_what_it_started(tmp_path):
    gpu_check = load_gpu_check()
    check = gpu_check.Check(smoke=True, python=sys.executable, work=tmp_path, deadline=time.monotonic() + 2,
                            env=dict(os.environ))
    # A step that starts a process of its own, then hangs: both must be gone once the budget is spent.
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
              "print(p.pid, flush=True); time.sleep(120)")
    start = time.monotonic()
    child = check.run([sys.executable, "-c", script], "eager")
    assert child.timed_out and time.monotonic() - start < 30
    assert gpu_check.status(child, ok=True) == "timeout"
    grandchild = int(child.output.split()[0])
    for _ in range(50):  # SIGKILL is delivered at once, but the process table may lag a moment
        if not running(grandchild):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"process {grandchild}, started by the step, outlived its timeout")


def running(pid: int) -> bool:
    """Whether pid runs: a killed process whose parent died too may stay a zombie where nothing reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_cut_short_test_report_and_a_broken_step_are_failures_not_crashes(tmp_path):
    gpu_check = load_gpu_check()
    cut = tmp_path / "cut.xml"  # what pytest leaves when the step's timeout kills it mid-write
    cut.write_text("<testsuites><testsuite><testcase name='test_x[1-1-8-float32-tf32x3-dot]'")
    assert gpu_check.junit_counts(cut) is None and gpu_check.junit_counts(tmp_path / "absent.xml") is None
    result = gpu_check.guarded(lambda: {}["missing"], "2. kernel tests")
    assert result.status == "fail" and "KeyError" in result.body
