"""The GPU check: everything a session lent a GPU should measure, in under 5 minutes, into one Markdown file.

    bench/gpu_check.sh --out gpu-check.md          # on the GPU machine: a fresh checkout, no network
    bench/gpu_check.sh --smoke --out /tmp/x.md     # on CPU: every path of this script, tiny shapes, no install
    make gpu-wheels                                # here, with network: the wheels the GPU machine lacks, in .whl/

Steps, each timed, each a section of the Markdown with its status and figures, under one summary table:
  1. install: wheels carried in .whl/ (soundfile and its needs; the GPU image lacks them) into /tmp, then
     `pip install --no-deps --no-build-isolation -e .` (builds the C++ extension; needs no network), then
     what imports: a missing module is named with what to carry.
  2. kernel tests: tests/test_kernels_assign_triton.py with SDA_TEST_DEVICE=cuda, the compiled kernel on CUDA
     tensors (16-bit inputs on the tensor cores, float32 through tf32x3) against the reference and the oracle.
  3. kernel table: bench/gpu_kernels.py (its own check, the device's copy and matmul yardsticks, the table).
  4. training step: the engine's own _update (sda.train.engine) on a run built by its _setup from generated
     log-mels of the default shape, bf16 autocast: eager, then with the model's forward under torch.compile
     (compile time apart from the steady state). CUDA graphs: not implemented (section 4c says why).

Every step runs in its own process under a timeout inside one overall budget, so a hang or a crash is one
failed step and the others still run and report. Nothing is written outside the checkout, --out and one
folder under /tmp (Triton's and Inductor's caches included), except what `pip install -e .` installs into
the interpreter's site-packages. The GPU's settings are left alone.

--smoke runs the same steps on CPU: pip's --dry-run, a few kernel tests through TRITON_INTERPRET=1,
gpu_kernels.py --smoke, and a tiny model for a few steps with torch.compile's aot_eager backend (the
tracing through dynamo and AOT autograd, where graph breaks and failures come from, without the minute
of C++ that Inductor would spend on 2 cores for code the GPU never runs). tests/test_gpu_check.py runs it.

This file is two programs: the orchestrator (main; standard library only, so that it runs before anything
is installed) and one worker per training-step mode (--train-step MODE), which imports torch and sda.
"""

import argparse
import json
import os
import platform
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / ".whl"
# The GPU image has torch, triton, numpy, pytest and the rest, but neither soundfile nor gradio: the engine
# imports sda.data.audio, which imports soundfile (gradio only the page, which no step needs). soundfile
# needs cffi, which needs pycparser. The versions are this machine's, which the tests ran with.
CARRIED = ("soundfile", "cffi", "pycparser")
GPU_PYTHON = "3.12"  # the GPU image's (/work/.library/device/KINDS.md)
# pip matches a manylinux tag exactly, so name every one these wheels are built for.
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
CARRY_HINT = ("carry the wheels: here, with network, `make gpu-wheels` (or `python bench/gpu_check.py "
              "--download-wheels`) fills .whl/; then name .whl in the device run's carry. bench/gpu_check.sh "
              "installs them into /tmp by itself")

BUDGET_S = 290.0  # the whole check; its 5 minutes are hard, so a little is kept for the Markdown
SMOKE_BUDGET_S = 300.0  # a loaded 2-core machine; tests/test_gpu_check.py's own timeout is above it
# Each step's own limit (seconds): GPU, smoke. What is left of the budget caps it further.
LIMITS = {"install": (90, 60), "kernel tests": (100, 90), "kernel table": (75, 60),
          "eager": (45, 60), "compile": (120, 90)}
KERNEL_TEST_FILE = "tests/test_kernels_assign_triton.py"
# --smoke: the tests that reach every kind of check (one shape in each dtype, ties, mixed dtypes, no sums, NaN,
# dispatch) in seconds under the interpreter; the whole file takes minutes there.
SMOKE_KERNEL_TESTS = "127-64-8 or exact_ties or mixed_input or without_sums or nan or supports or dispatch"
CUDA_GRAPHS_REASON = (
    "The whole step cannot be captured: _update reads its verdict (the losses, the gradient norm and whether "
    "every code is finite, in one .tolist(): its one host synchronisation) before it decides to step the "
    "optimizer or put the codebooks back. The forward and the quantizer no longer synchronise (fixed-shape "
    "writes over all K codes), so a graph of forward + backward with the verdict read after the replay is the "
    "next step; a graph of the forward alone would not be the step's figure.")


@dataclass
class Result:
    """One step of the check: its section of the Markdown and its row of the summary."""

    title: str  # "1. install"
    status: str  # pass | fail | timeout | not run | not implemented
    seconds: float
    body: str  # Markdown: figures and tables; the tail of the output when something failed


@dataclass
class Child:
    """A step's process, run to its end or its timeout."""

    returncode: int | None  # None: killed at the timeout
    output: str  # stdout and stderr together
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass
class Check:
    """What every step needs: the mode, the interpreter, the folder under /tmp, the environment, the deadline."""

    smoke: bool
    python: str
    work: Path  # under /tmp; removed at the end
    deadline: float  # time.monotonic() by which the whole check must end
    env: dict[str, str] = field(default_factory=dict)
    probe: dict = field(default_factory=dict)  # step 1's imports and versions (the worker's JSON)

    def limit(self, step: str) -> float:
        """Seconds step may run: its own limit, or what is left of the budget."""
        return min(LIMITS[step][1 if self.smoke else 0], self.deadline - time.monotonic())

    def run(self, args: list[str], step: str, env: dict[str, str] | None = None) -> Child:
        """args in the checkout, under the step's limit. A process group of its own, so that a timeout
        also ends what it started (pytest-xdist's workers, Inductor's compile workers)."""
        start = time.monotonic()
        proc = subprocess.Popen(args, cwd=ROOT, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=max(1.0, self.limit(step)))
            return Child(proc.returncode, output, time.monotonic() - start)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
            return Child(None, output, time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu-check.md"), help="the results (Markdown)")
    parser.add_argument("--smoke", action="store_true", help="every step on CPU, tiny shapes, pip --dry-run")
    parser.add_argument("--download-wheels", action="store_true",
                        help=f"fetch {', '.join(CARRIED)} for Python {GPU_PYTHON} into .whl/ (needs network)")
    parser.add_argument("--train-step", choices=("eager", "compile"), help=argparse.SUPPRESS)  # the worker
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)  # where the worker writes its record
    args = parser.parse_args(argv)
    if args.download_wheels:
        return download_wheels()
    if args.train_step:
        timing = time_training_step(args.train_step, args.smoke)
        args.json.write_text(json.dumps(asdict(timing)))
        return 0

    started, wall = time.monotonic(), time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    work = Path(tempfile.mkdtemp(prefix="sda-gpu-check-"))
    check = Check(smoke=args.smoke, python=sys.executable, work=work,
                  deadline=started + (SMOKE_BUDGET_S if args.smoke else BUDGET_S), env=child_env(work, args.smoke))
    try:
        results = [guarded(install, "1. install", check), guarded(kernel_tests, "2. kernel tests", check),
                   guarded(kernel_table, "3. kernel table", check),
                   guarded(training_step, MODE_TITLES["eager"], check, "eager"),
                   guarded(training_step, MODE_TITLES["compile"], check, "compile"), cuda_graphs()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    markdown = report(check, results, wall, time.monotonic() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    print(markdown)
    print(f"wrote {args.out}")
    return 0 if all(r.status in ("pass", "not implemented") for r in results) else 1


def guarded(step, title: str, *args) -> Result:
    """step(*args), or a failed Result if reading its outcome raised: a bug here must not cost the other steps."""
    start = time.monotonic()
    try:
        return step(*args)
    except Exception:  # noqa: BLE001 - reported in the Markdown, traceback and all
        return Result(title, "fail", time.monotonic() - start,
                      f"the check itself failed:\n\n```\n{traceback.format_exc()[-3000:]}\n```")


def child_env(work: Path, smoke: bool) -> dict[str, str]:
    """The steps' environment: caches under work (not ~/.triton or ~/.cache), Python unbuffered, and the
    Triton interpreter on for --smoke and off on the GPU, whatever the caller's shell says."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PIP_NO_INPUT="1",
               TRITON_HOME=str(work), TRITON_CACHE_DIR=str(work / "triton"),
               TORCHINDUCTOR_CACHE_DIR=str(work / "inductor"), XDG_CACHE_HOME=str(work / "cache"))
    env.pop("SDA_KERNELS", None)  # auto: the kernel on CUDA, what a user's run gets
    if smoke:
        env["TRITON_INTERPRET"] = "1"
    else:
        env.pop("TRITON_INTERPRET", None)
    return env


# ---------------------------------------------------------------------------------------------------------
# 1. install


def install(check: Check) -> Result:
    title, start, lines, ok = "1. install", time.monotonic(), [], True
    pip = [check.python, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir"]
    wheels = sorted(WHEELS.glob("*.whl"))
    names = [w.name.split("-")[0].lower() for w in wheels]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        ok = False  # pip would refuse the lot
        lines.append(f"- .whl/ holds two versions of {', '.join(twice)}: keep one (`make gpu-wheels` does)")
    elif wheels and check.smoke:  # built for the GPU's Python, so not for this one: only listed
        lines.append(f"- carried wheels, for Python {GPU_PYTHON} (not installed by --smoke): "
                     f"{', '.join(w.name for w in wheels)}")
    elif wheels:
        site = check.work / "site"
        child = check.run(pip + ["-q", "--no-compile", "--upgrade", "--target", str(site)] + [str(w) for w in wheels],
                          "install")
        ok &= child.returncode == 0
        lines.append(f"- carried wheels ({', '.join(w.name for w in wheels)}) into {site}: "
                     f"{outcome(child)}, {child.seconds:.1f} s")
        # Every later step imports from there.
        check.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), check.env.get("PYTHONPATH")]))
        if child.returncode != 0:
            lines.append(tail(child))
    else:
        lines.append("- no wheels in .whl/ (soundfile is needed only if the image lacks it; step 4 says so)")

    # --no-build-isolation: setuptools and pybind11 from the image, since nothing can be fetched there.
    # -v: pip shows setup.py's warning that the C++ extension was not built only then.
    child = check.run(pip + ["-v", "--no-build-isolation", "-e", "."] + (["--dry-run"] if check.smoke else []),
                      "install")
    ok &= child.returncode == 0
    lines.append(f"- `pip install --no-deps --no-build-isolation -e .`{' --dry-run' if check.smoke else ''}: "
                 f"{outcome(child)}, {child.seconds:.1f} s")
    if child.returncode != 0:
        lines.append(tail(child))
    lines += [f"  - {line.strip()}" for line in child.output.splitlines() if "sda._sdafile was not built" in line
              or "pybind11 is not installed" in line]

    child = check.run([check.python, "-c", PROBE], "install")
    try:
        check.probe = json.loads(child.output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Result(title, status(child, False), time.monotonic() - start, "\n".join(lines + [tail(child)]))
    lines += ["", "| module | imports | version or problem |", "|---|---|---|"]
    for name, (imported, detail) in check.probe["modules"].items():
        lines.append(f"| {name} | {'yes' if imported else 'NO'} | {detail} |")
        ok &= imported
    missing = [n for n, (imported, _) in check.probe["modules"].items() if not imported]
    if any(n in CARRIED for n in missing):
        lines += ["", f"**soundfile is missing**: {CARRY_HINT}."]
    if "sda._sdafile" in missing:
        lines += ["", "**The C++ extension did not build**: the install's line above says why."]
    lines += ["", f"Device: {check.probe['device']}"]
    return Result(title, "pass" if ok else "fail", time.monotonic() - start, "\n".join(lines))


# Run in the installed environment: what imports, with versions, and the device. Its last line is JSON.
PROBE = r"""
import importlib, json, platform
modules = {}
for name in ("torch", "triton", "numpy", "torchaudio", "soundfile", "sda", "sda._sdafile",
             "sda.kernels.assign_triton", "sda.train.engine"):
    try:
        module = importlib.import_module(name)
        modules[name] = (True, getattr(module, "__version__", "") or getattr(module, "__file__", ""))
    except Exception as exc:
        modules[name] = (False, f"{type(exc).__name__}: {exc}".replace("|", "/"))
device = "no torch"
if modules["torch"][0]:
    import torch
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        device = (f"{p.name}, sm_{p.major}{p.minor}, {p.multi_processor_count} SMs, "
                  f"{p.total_memory / 2**30:.0f} GiB; CUDA {torch.version.cuda}")
    else:
        device = "cpu (no CUDA)"
print(json.dumps({"modules": modules, "device": device, "python": platform.python_version()}))
"""


# ---------------------------------------------------------------------------------------------------------
# 2. kernel tests


def kernel_tests(check: Check) -> Result:
    title, start = "2. kernel tests", time.monotonic()
    junit = check.work / "kernel-tests.xml"
    args = [check.python, "-m", "pytest", KERNEL_TEST_FILE, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    # One seed for every process (each pytest-xdist worker would draw its own), so a failure can be replayed.
    env = dict(check.env, SDA_TEST_SEED=os.environ.get("SDA_TEST_SEED") or str(random.randrange(2**31)))
    if check.smoke:
        args += ["-k", SMOKE_KERNEL_TESTS]
        env["SDA_TEST_DEVICE"] = "cpu"
    else:
        env["SDA_TEST_DEVICE"] = "cuda"
        # Most of the run is compiling the kernel's specialisations, one after another in one process:
        # pytest-xdist (in the GPU image) spreads them over processes.
        if find_spec("xdist") is not None:
            args += ["-n", str(min(8, os.cpu_count() or 1))]
    child = check.run(args, "kernel tests", env)
    counts = junit_counts(junit)
    ok = child.returncode == 0 and counts is not None and counts.failed == 0 and counts.skipped == 0 \
        and counts.passed > 0
    lines = [f"`SDA_TEST_SEED={env['SDA_TEST_SEED']} SDA_TEST_DEVICE={env['SDA_TEST_DEVICE']} "
             f"{'TRITON_INTERPRET=1 ' if check.smoke else ''}python -m pytest {shlex.join(args[3:])}`", ""]
    if counts is None:
        lines.append("no test report was written")
    else:
        lines += [f"{counts.passed} passed, {counts.failed} failed or errors, {counts.skipped} skipped, "
                  f"{counts.seconds:.1f} s of test time (summed over workers). test_matches_reference's cases by the "
                  "dot the kernel took (dtype, then dot_mode's path):", "",
                  "| dot | passed | failed |", "|---|---|---|"]
        lines += [f"| {path} | {p} | {f} |" for path, (p, f) in sorted(counts.by_dot.items())]
    if not ok:
        lines += ["", tail(child)]
    return Result(title, status(child, ok), time.monotonic() - start, "\n".join(lines))


@dataclass
class TestCounts:
    passed: int
    failed: int  # failures and errors
    skipped: int
    seconds: float
    by_dot: dict[str, tuple[int, int]]  # "bfloat16-tensor-core-dot": (passed, failed), from the test ids


def junit_counts(path: Path) -> TestCounts | None:
    try:
        cases = ET.parse(path).getroot().iter("testcase")
    except (OSError, ET.ParseError):  # not written, or cut short by the timeout
        return None
    passed = failed = skipped = 0
    seconds, by_dot = 0.0, {}
    for case in cases:
        bad = case.find("failure") is not None or case.find("error") is not None
        skip = case.find("skipped") is not None
        passed, failed, skipped = passed + (not bad and not skip), failed + bad, skipped + skip
        seconds += float(case.get("time", 0))
        name = case.get("name", "")
        if name.endswith("-dot]"):  # test_matches_reference[n-k-d-<dtype>-<dot>-dot]
            dot = "-".join(name[:-1].split("-")[3:])
            p, f = by_dot.get(dot, (0, 0))
            by_dot[dot] = (p + (not bad and not skip), f + bad)
    return TestCounts(passed, failed, skipped, seconds, by_dot)


# ---------------------------------------------------------------------------------------------------------
# 3. kernel table

TABLE_HEAD = ("| dtype | D | K | bound | assign ms | no sums ms | kernel ms | GB/s | % copy | vs cdist (no sums) |\n"
              "|---|---|---|---|---|---|---|---|---|---|")  # gpu_kernels.py's


def kernel_table(check: Check) -> Result:
    title, start = "3. kernel table", time.monotonic()
    table = check.work / "kernels.md"
    # --smoke: the kernel tests have checked it; gpu_kernels.py's own check is tests/test_bench_scripts.py's.
    args = [check.python, "bench/gpu_kernels.py", "--out", str(table)] + (["--smoke", "--no-check"]
                                                                         if check.smoke else [])
    child = check.run(args, "kernel table")
    ok = child.returncode == 0 and table.exists()
    # What the table's figures rest on: the device line and its copy and matmul yardsticks.
    context = [line for line in child.output.splitlines() if line.startswith(("# ", "copy ", "check "))]
    lines = [f"`python {shlex.join(args[1:])}`", ""] + [f"    {line}" for line in context] + [""]
    if ok:
        lines.append(table.read_text())
    else:  # the rows it printed before it failed or ran out of time, each as it was measured
        rows = [line for line in child.output.splitlines() if line.startswith("| ")]
        lines += (["Rows measured before it stopped:", "", TABLE_HEAD] + rows + [""] if rows else []) + [tail(child)]
    return Result(title, status(child, ok), time.monotonic() - start, "\n".join(lines))


# ---------------------------------------------------------------------------------------------------------
# 4. training step: the orchestrator's side


MODE_TITLES = {"eager": "4a. training step, eager", "compile": "4b. training step, torch.compile"}


@dataclass
class StepTiming:
    """One mode's figures, written by the worker as JSON."""

    mode: str
    device: str
    backend: str  # the kernels': "triton" on CUDA, or the figures are not the kernel's
    precision: str
    shape: str  # the batch, [B, M, T], and the model
    compile_backend: str  # torch.compile's; "" eager
    first_step_s: float  # the first step with the quantizer on; under torch.compile, the compile with it
    warmup_steps: int  # steps before the timed ones, the first included
    warmup_s: float
    steps: int  # timed
    median_ms: float
    p90_ms: float
    mean_ms: float
    peak_allocated_mib: float  # during the timed steps; CUDA only (0 on CPU)
    peak_reserved_mib: float
    skipped_steps: int  # steps whose loss or gradients were not finite: the figures would be suspect
    graphs: int  # torch.compile: graphs compiled (unique_graphs); 0 eager
    graph_breaks: int
    syncs_per_step: float  # host synchronisations torch.cuda's sync debug mode reports per step; -1 on CPU
    notes: list[str]


def training_step(check: Check, mode: str) -> Result:
    title, start = MODE_TITLES[mode], time.monotonic()
    record = check.work / f"step-{mode}.json"
    args = [check.python, str(Path(__file__)), "--train-step", mode, "--json", str(record)]
    child = check.run(args + (["--smoke"] if check.smoke else []), mode)
    if child.returncode != 0 or not record.exists():
        return Result(title, status(child, False), time.monotonic() - start, tail(child))
    t = StepTiming(**json.loads(record.read_text()))
    on_gpu = t.device.startswith("cuda")
    problems = [f"{t.skipped_steps} steps skipped (non-finite)"] if t.skipped_steps else []
    if on_gpu and t.backend != "triton":
        problems.append(f"the quantizer used the {t.backend} backend, not the kernel")
    lines = [
        f"{t.shape}; {t.precision}; kernels: {t.backend}; device {t.device}"
        + (f"; torch.compile backend {t.compile_backend}, {t.graphs} graphs, {t.graph_breaks} graph breaks"
           if t.compile_backend else ""),
        "",
        "| mode | first step s | warm-up steps, s | timed steps | median ms | p90 ms | mean ms | peak alloc MiB "
        "| peak reserved MiB | host syncs per step |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {t.mode} | {t.first_step_s:.2f} | {t.warmup_steps}, {t.warmup_s:.2f} | {t.steps} | {t.median_ms:.2f} "
        f"| {t.p90_ms:.2f} | {t.mean_ms:.2f} | {t.peak_allocated_mib:.0f} | {t.peak_reserved_mib:.0f} "
        f"| {'-' if t.syncs_per_step < 0 else f'{t.syncs_per_step:g}'} |",
    ]
    if t.notes or problems:
        lines += [""] + [f"- {note}" for note in problems + t.notes]
    return Result(title, "fail" if problems else "pass", time.monotonic() - start, "\n".join(lines))


def cuda_graphs() -> Result:
    return Result("4c. training step, CUDA graphs", "not implemented", 0.0, CUDA_GRAPHS_REASON)


# ---------------------------------------------------------------------------------------------------------
# 4. training step: the worker (imports torch and sda; run in its own process per mode)


@dataclass(frozen=True)
class Setup:
    """What one mode's worker trains on and how long it times."""

    chunks: int  # generated training chunks
    chunk_frames: int
    warmup: int  # steps before the timed ones, the first (compile) included
    steps: int  # timed
    config: dict = field(default_factory=dict)  # VQVAEConfig settings other than the defaults


# The default model and batch (VQVAEConfig, AudioConfig), on a collection long enough for the largest
# codebook; --smoke a tiny one. warmup_steps=0: every timed step quantizes, as after warm-up.
GPU_SETUP = Setup(chunks=1024, chunk_frames=64, warmup=10, steps=200)  # 64: AudioConfig's (sda may not import yet)
SMOKE_SETUP = Setup(chunks=32, chunk_frames=16, warmup=2, steps=3,
                    config=dict(hidden_channels=16, codebook_dim=8, codebook_size=16, batch_size=4))
COLLECTION_SECONDS = 600.0  # codebook size by seconds of audio: 150 s or more get the largest (256)


def time_training_step(mode: str, smoke: bool) -> StepTiming:
    import torch

    from sda.config import AudioConfig, RunOptions, VQVAEConfig
    from sda.data.dataset import Dataset
    from sda.train import engine
    from sda.train.runfiles import RunFiles

    setup = SMOKE_SETUP if smoke else GPU_SETUP
    device = torch.device("cpu" if smoke else "cuda")
    audio = AudioConfig(chunk_frames=setup.chunk_frames)
    chunks = setup.chunks
    cfg = VQVAEConfig(audio=audio, warmup_steps=0, **setup.config).resolve(COLLECTION_SECONDS, chunks)
    # Log-mels of the default shape with a log-mel's range. Only k-means and dead-code replacement see the
    # values; the convolutions' and the kernel's cost does not depend on them.
    mels = torch.randn(chunks, audio.n_mels, audio.chunk_frames, generator=torch.Generator().manual_seed(0)) * 2 - 6
    # The preflight (what the folder held) only reaches events and saved files, which these steps never make.
    data = Dataset(preflight=None, config=cfg, train_mels=mels, val_mels=mels[:4],  # type: ignore[arg-type]
                   val_audio=torch.zeros(4, audio.chunk_samples))
    work = Path(tempfile.mkdtemp(prefix="sda-gpu-check-run-"))  # check_space looks at it; nothing is written
    options = RunOptions(data_dir=work, out_dir=work, device=device.type, precision="bf16")
    run = engine._setup(None, RunFiles(work, "gpu-check", None), data, options, device, "bf16", time.monotonic())
    # The end of warm-up, as engine._step does it (with warmup_steps=0 k-means' count scale is 1).
    run.model.initialize(run.kmeans_sample)

    notes: list[str] = []
    compile_backend = ""
    if mode == "compile":
        # The model's forward, which _update calls through run.forward; the backward, clipping and AdamW
        # stay eager, as they would in a run that compiled the model.
        compile_backend = "aot_eager" if smoke else "inductor"
        run.forward = torch.compile(run.forward, backend=compile_backend)

    batch = cfg.batch_size
    order = torch.randperm(chunks, generator=torch.Generator().manual_seed(1)).to(device)
    rows = [order[(i * batch) % (chunks - batch + 1):][:batch] for i in range(setup.warmup + setup.steps)]
    skipped = 0

    def step(i: int) -> None:
        nonlocal skipped
        _, ok = engine._update(run, run.train_mels[rows[i]], quantize=True)
        skipped += not ok

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    step(0)
    sync()
    first = time.perf_counter() - t0
    for i in range(1, setup.warmup):
        step(i)
    sync()
    warmup_s = time.perf_counter() - t0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    graphs_before = compiled_graphs() if mode == "compile" else 0
    times_ms = []
    for i in range(setup.warmup, setup.warmup + setup.steps):
        if device.type == "cuda":
            # Events on the stream, read after a synchronise: what the GPU spent between the step's ends,
            # host waits inside the step included (the step reads its losses back, so it syncs anyway).
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step(i)
            end.record()
            end.synchronize()
            times_ms.append(begin.elapsed_time(end))
        else:
            t = time.perf_counter()
            step(i)
            times_ms.append((time.perf_counter() - t) * 1e3)
    peak = (torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device)) \
        if device.type == "cuda" else (0, 0)
    syncs = count_syncs(lambda: step(0), SYNC_COUNT_STEPS) if device.type == "cuda" else -1.0

    graphs = breaks = 0
    if mode == "compile":
        from torch._dynamo.utils import counters

        graphs = compiled_graphs()
        if graphs > graphs_before:  # a recompile inside the timed steps: their times hold a compile
            notes.append(f"{graphs - graphs_before} graphs were compiled during the timed steps; more warm-up "
                         "steps are needed")
        breaks = sum(counters["graph_break"].values())
        by_kind: dict[str, int] = {}  # a reason's first line names its kind; the rest is where, in many lines
        for reason, n in counters["graph_break"].items():
            kind = reason.strip().splitlines()[0][:160]
            by_kind[kind] = by_kind.get(kind, 0) + n
        notes += [f"graph breaks: {n} x {kind}" for kind, n in sorted(by_kind.items(), key=lambda kv: -kv[1])]
    shutil.rmtree(work, ignore_errors=True)
    times_ms.sort()
    return StepTiming(
        mode=mode, device=str(device), backend=run.backend, precision=run.precision,
        shape=(f"batch [{batch}, {audio.n_mels}, {audio.chunk_frames}]; {cfg.rvq_levels} levels x "
               f"{cfg.codebook_size} codes x {cfg.codebook_dim}; hidden {cfg.hidden_channels}"),
        compile_backend=compile_backend, first_step_s=first, warmup_steps=setup.warmup, warmup_s=warmup_s,
        steps=len(times_ms), median_ms=statistics.median(times_ms),
        p90_ms=times_ms[min(len(times_ms) - 1, round(0.9 * (len(times_ms) - 1)))],
        mean_ms=statistics.fmean(times_ms), peak_allocated_mib=peak[0] / 2**20, peak_reserved_mib=peak[1] / 2**20,
        skipped_steps=skipped, graphs=graphs, graph_breaks=breaks, syncs_per_step=syncs, notes=notes)


SYNC_COUNT_STEPS = 5


def count_syncs(step, steps: int) -> float:
    """Host synchronisations per call of step, as torch.cuda's sync debug mode warns of them (one warning
    per synchronising call; tests/test_host_syncs.py counts the same on CPU, where it expects 1)."""
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(steps):
                step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in seen) / steps


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# ---------------------------------------------------------------------------------------------------------
# The wheels, and the Markdown


def download_wheels() -> int:
    """Fetch CARRIED at this machine's versions for the GPU's Python into .whl/ (one version of each)."""
    pins = [f"{name}=={metadata.version(name)}" for name in CARRIED]
    WHEELS.mkdir(exist_ok=True)
    for old in WHEELS.glob("*.whl"):  # two versions of one package stop the whole install there
        if old.name.split("-")[0].lower() in CARRIED:
            old.unlink()
    args = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
            GPU_PYTHON, "--implementation", "cp", "-d", str(WHEELS)]
    for tag in PLATFORMS:
        args += ["--platform", tag]
    print(" ".join(args + pins))
    rc = subprocess.call(args + pins)
    if rc == 0:
        print(f"{WHEELS}: {', '.join(sorted(w.name for w in WHEELS.glob('*.whl')))}; name .whl in the run's carry")
    return rc


def report(check: Check, results: list[Result], wall: str, seconds: float) -> str:
    probe, mode = check.probe, "--smoke, on CPU" if check.smoke else "GPU"
    versions = ", ".join(f"{name} {detail}" for name, (ok, detail) in probe.get("modules", {}).items()
                         if ok and name in ("torch", "triton"))
    lines = [
        "# sda GPU check",
        "",
        f"{wall}; {mode}; {probe.get('device', 'device unknown (step 1 failed)')}; Python "
        f"{probe.get('python', platform.python_version())}, {versions or 'torch not importable'}; "
        f"commit {commit()}; {seconds:.0f} s in all (budget {SMOKE_BUDGET_S if check.smoke else BUDGET_S:.0f} s).",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {r.title} | {r.status} | {r.seconds:.1f} |" for r in results]
    for r in results:
        lines += ["", f"## {r.title}: {r.status} ({r.seconds:.1f} s)", "", r.body]
    return "\n".join(lines) + "\n"


def commit() -> str:
    """The checkout's commit, if it is a git checkout (the GPU machine's copy may not be)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"


def status(child: Child, ok: bool) -> str:
    return "timeout" if child.timed_out else "pass" if ok else "fail"


def outcome(child: Child) -> str:
    return "timed out" if child.timed_out else "ok" if child.returncode == 0 else f"exit status {child.returncode}"


def tail(child: Child, chars: int = 3000) -> str:
    """The end of a step's output, as a code block, for the section of a step that failed."""
    text = child.output[-chars:].replace("```", "'''")
    head = f"timed out after {child.seconds:.0f} s" if child.timed_out else f"exit status {child.returncode}"
    return f"{head}; the end of its output:\n\n```\n{text}\n```"


if __name__ == "__main__":
    sys.exit(main())
