"""Training on two processes on localhost with gloo, the way torchrun runs it.

Runs go through real launchers: torchrun (torch.distributed.run) for the state comparisons, `sda train
--nproc 2` for the command line, and for the failure tests two plain `sda train` processes with the
environment torchrun would give them, so that nothing but sda itself can end the survivor.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sda.cli import launch
from sda.config import VQVAEConfig
from sda.data.dataset import load_dataset
from sda.data.synth import write_collection
from sda.errors import ConfigError
from sda.format import modelfile
from sda.train import distributed
from tests.helpers import SMALL, free_port, sda

WORKER = Path(__file__).parent / "distributed_worker.py"
CLI_FAST = ["--codebook-dim", "8", "--batch-size", "4", "--seed", "5", "--health-every", "1"]
ENV = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "PYTHONUNBUFFERED": "1"}
ONE_THREAD = {**ENV, "OMP_NUM_THREADS": "1"}  # two processes on a small machine


def run_worker(tmp_path: Path, name: str, config: VQVAEConfig, data: Path, processes: int, nan_at=None) -> Path:
    """Train with the test worker on `processes` processes; returns its output folder."""
    out = tmp_path / name
    out.mkdir()
    spec = out / "spec.json"
    spec.write_text(json.dumps({"config": config.to_dict(), "data": str(data), "out": str(out), "nan_at": nan_at}))
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    cmd = [*(launcher if processes > 1 else [sys.executable]), str(WORKER), str(spec)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ONE_THREAD)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def final_states(out: Path, processes: int) -> list[dict]:
    return [torch.load(out / f"rank{r}.pt")["final"] for r in range(processes)]


def test_two_processes_stay_identical_through_replacement_and_a_skipped_step(folder, tmp_path):
    # A large codebook on little data: codes die and are re-seeded from the first steps on. Two steps of
    # warm-up, so k-means runs mid-run on a trained encoder. Process 1 alone gets a NaN loss at step 3
    # (the first quantized one), which both must skip together (or DDP would hang).
    config = dataclasses.replace(SMALL, codebook_size=256, batch_size=4, epochs=2, warmup_steps=2)
    out = run_worker(tmp_path, "two", config, folder, processes=2, nan_at=[1, 3])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] >= 6
    assert sum(summary["replaced"]) > 0, "no dead code was replaced: the broadcast was not exercised"
    assert any("step 3: the loss, its gradients or a code were not finite" in w for w in summary["warnings"])

    first, second = final_states(out, 2)
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), f"{key} differs between the two processes"
    saved, _ = modelfile.load_model(out / "m.sda")
    for key, value in saved.state_dict().items():
        assert torch.equal(value, first[key]), f"{key}: the saved model is not process 0's"


def test_two_processes_of_batch_b_match_one_process_of_batch_2b(folder, tmp_path):
    # 24-frame chunks: the generated kit gives 32 training chunks, so both runs make 2 equal steps per
    # epoch over the same chunks. Dead-code replacement draws rows at random (from process 0's share with
    # two processes, from the whole batch with one), so it is off here.
    config = dataclasses.replace(SMALL, dead_code_threshold=0.0, epochs=2,
                                 audio=dataclasses.replace(SMALL.audio, chunk_frames=24))
    assert load_dataset(folder, config).train_mels.shape[0] == 32
    one_out = run_worker(tmp_path, "one", dataclasses.replace(config, batch_size=16), folder, processes=1)
    two_out = run_worker(tmp_path, "two", dataclasses.replace(config, batch_size=8), folder, processes=2)
    one, two = final_states(one_out, 1)[0], final_states(two_out, 2)[0]
    initial = torch.load(one_out / "rank0.pt")["initial"]

    # After one step the two agree to 1e-6: only the order of float sums differs. Over more steps a
    # vector near the boundary of two codes can land on either, so the state is compared as follows:
    # weights to 1e-4; each code and its EMA sum to 2% of the level's scale; usage to two assignments
    # (one assignment moves cluster_size by 1 - decay). Without the all-reduce the usage would be half.
    flip = 1 - config.ema_decay
    for key in one:
        a, b = one[key].float(), two[key].float()
        if key.endswith("cluster_size"):
            assert (a - b).abs().max() <= 2 * flip + 1e-6, f"{key}: {(a - b).abs().max():.4f}"
            assert (a - initial[key]).abs().max() > 20 * flip, f"{key} hardly moved: the check would be empty"
        elif key.endswith(("embed", "embed_sum")):
            assert (a - b).abs().max() <= 0.02 * a.abs().max(), f"{key}: {(a - b).abs().max():.2e}"
            assert not torch.allclose(a, initial[key].float()), f"{key} did not move"
        else:
            torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4, msg=lambda m, k=key: f"{k}: {m}")


def _codebook_process(rank: int, port: int, out: str) -> None:
    """One of two processes holding an EMACodebook, each with its own data and its own random stream."""
    from sda.model.codebook import EMACodebook

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    with distributed.joined(torch.device("cpu"), timeout_s=60):
        torch.manual_seed(rank)  # as on GPUs, where even the same draws may come out differently
        x = torch.randn(48, 4) + 3 * rank
        book = EMACodebook(16, 4, decay=0.5, dead_code_threshold=1.0, kmeans_iters=3, sync=distributed)  # die fast
        book.initialize(x)
        initialized = {k: v.clone() for k, v in book.state_dict().items()}
        steps = [book(x[torch.randperm(48)[:32]]) for _ in range(4)]
        torch.save({"x": x, "initialized": initialized, "final": book.state_dict(),
                    "counts": [s.counts for s in steps], "replaced": [s.replaced for s in steps]}, f"{out}/{rank}.pt")


def test_the_codebook_keeps_one_state_across_processes_that_see_different_data(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_codebook_process, args=(free_port(), str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"{rank}.pt") for rank in (0, 1))
    for stage in ("initialized", "final"):
        for key in first[stage]:
            assert torch.equal(first[stage][key], second[stage][key]), f"{stage} {key} differs"
    # k-means ran on process 0's data: its codes lie among process 0's vectors, not process 1's (3 away).
    centroids = first["initialized"]["embed"]
    assert torch.cdist(centroids, first["x"]).min(dim=1).values.mean() < torch.cdist(centroids, second["x"]).min(
        dim=1).values.mean()
    for counts, other in zip(first["counts"], second["counts"], strict=True):
        assert counts.sum() == 64 and torch.equal(counts, other)  # both batches of 32, counted together
    assert sum(first["replaced"]) > 0 and first["replaced"] == second["replaced"]


def start(args_of_rank, processes: int = 2) -> list[subprocess.Popen]:
    """`sda train` as `processes` processes, with the environment torchrun gives its workers."""
    port, procs = free_port(), []
    for rank in range(processes):
        env = {**ONE_THREAD, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(processes), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(processes)}
        procs.append(subprocess.Popen([sys.executable, "-m", "sda", "train", *map(str, args_of_rank(rank))],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    return procs


def wait_for(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if text in line:
            return
        assert time.monotonic() < deadline, f"no {text!r} in time"
    pytest.fail(f"the process ended before printing {text!r}: {proc.stderr.read()}")


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str, float]:
    """(stdout, stderr, seconds it took to exit)."""
    start_time = time.monotonic()
    stdout, stderr = proc.communicate(timeout=timeout)
    return stdout, stderr, time.monotonic() - start_time


def test_when_a_process_dies_the_other_saves_the_model_and_exits_with_a_clear_error(folder, tmp_path):
    procs = start(lambda rank: [folder, "--epochs", "30", *CLI_FAST, "--out", tmp_path, "--model-name", "cut"])
    try:
        wait_for(procs[0], "health over")
        procs[1].kill()
        stdout, stderr, seconds = finish(procs[0], timeout=60)
    finally:
        for proc in procs:
            proc.kill()
    assert procs[0].returncode == 1, stderr
    assert seconds < 30, f"took {seconds:.0f} s to notice"
    assert "process 0 of 2" in stderr and "lost contact with the others" in stderr and "Traceback" not in stderr
    checkpoint = tmp_path / "cut.checkpoint.sda"
    assert f"saved in {tmp_path / 'cut.sda'}" in stderr and f"--resume {checkpoint}" in stderr
    modelfile.load_model(tmp_path / "cut.sda")

    # Nothing is lost: one process takes over, redoing the epoch the failure cut short.
    resumed = sda("train", folder, "--resume", checkpoint, "--out", tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "saved by a run of 2 processes and this run has 1" in resumed.stdout
    assert "Training finished: 30 of 30 epochs" in resumed.stdout


def test_a_process_that_stops_answering_ends_the_run_after_the_timeout(folder, tmp_path):
    procs = start(lambda rank: [folder, "--epochs", "30", *CLI_FAST, "--out", tmp_path, "--dist-timeout", "3"])
    try:
        wait_for(procs[0], "health over")
        procs[1].send_signal(signal.SIGSTOP)
        _, stderr, seconds = finish(procs[0], timeout=60)
    finally:
        for proc in procs:
            proc.kill()
    assert procs[0].returncode == 1 and seconds < 20, (seconds, stderr)
    assert "lost contact with the others" in stderr and "did not answer within --dist-timeout" in stderr


@pytest.mark.parametrize("problem", ["other data", "no folder"])
def test_processes_start_only_together_and_on_the_same_data(folder, tmp_path, problem):
    other = tmp_path / "other"
    if problem == "other data":
        write_collection(other, n_files=6, seed=9)
    procs = start(lambda rank: [folder if rank == 0 else other, "--epochs", "1", "--out", tmp_path])
    (out0, err0, _), (out1, err1, _) = (finish(proc, timeout=120) for proc in procs)
    assert [p.returncode for p in procs] == [2, 2], (err0, err1)
    expected = ("the processes of this run did not load the same data" if problem == "other data"
                else "process 1 of 2 (on ")
    assert expected in err0 and err1 == "" and out1 == ""  # said once, by process 0
    assert not list(tmp_path.glob("*.sda"))


def test_sda_train_nproc_trains_on_two_processes_and_reports_once(folder, tmp_path):
    run = sda("train", folder, "--nproc", "2", "--epochs", "2", *CLI_FAST, "--out", tmp_path, "--model-name", "two")
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("Training finished: 2 of 2 epochs") == 1 and "2 processes" in run.stdout
    assert "batch 4 per process x 2 processes" in run.stdout
    assert "OMP_NUM_THREADS" not in run.stderr and "Traceback" not in run.stderr
    info = sda("info", tmp_path / "two.sda")
    assert "batch 4 per process x 2 processes" in info.stdout


def start_nproc_run(folder: Path, tmp_path: Path) -> subprocess.Popen:
    """`sda train --nproc 2`, long enough (30 epochs) to be interrupted; the model is tmp_path/cut.sda."""
    cmd = [sys.executable, "-m", "sda", "train", str(folder), "--nproc", "2", "--epochs", "30", *CLI_FAST,
           "--out", str(tmp_path), "--model-name", "cut"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_ctrl_c_stops_every_process_of_sda_train_nproc_and_saves(folder, tmp_path):
    proc = start_nproc_run(folder, tmp_path)
    try:
        wait_for(proc, "health over")
        proc.send_signal(signal.SIGINT)
        stdout, stderr, _ = finish(proc, timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert stdout.count("Training stopped early") == 1 and stderr.count("stopping after this step") == 1
    assert "Traceback" not in stderr
    model, metadata = modelfile.load_model(tmp_path / "cut.sda")
    assert metadata["history"]["processes"] == 2


def worker_of_rank(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the worker that torchrun started as `rank` (it starts them as its direct children)."""
    for pid in Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(pid)
    raise AssertionError(f"no worker of rank {rank}")


def test_when_a_worker_of_sda_train_nproc_is_killed_the_run_ends_and_says_so(folder, tmp_path):
    proc = start_nproc_run(folder, tmp_path)
    try:
        wait_for(proc, "health over")
        os.kill(worker_of_rank(proc, 1), signal.SIGKILL)
        _, stderr, seconds = finish(proc, timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 1 and seconds < 45, (seconds, stderr)
    assert "process 1 of 2" in stderr and "was killed by SIGKILL" in stderr and "Traceback" not in stderr
    modelfile.load_model(tmp_path / "cut.sda")  # process 0 saved before it went


def test_bad_input_under_sda_train_nproc_is_reported_once(tmp_path):
    run = sda("train", tmp_path / "missing", "--nproc", "2")
    assert run.returncode == 2 and run.stderr.count("does not exist") == 1, run.stderr


def test_nproc_must_agree_with_torchrun(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert launch.check_nproc(2) and not launch.check_nproc(1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # a worker that torchrun (or sda train --nproc 2) started
    assert not launch.check_nproc(2) and not launch.check_nproc(1)
    with pytest.raises(ConfigError, match="started by torchrun with 2 processes per machine"):
        launch.check_nproc(4)


def test_one_process_pays_nothing():
    t = torch.arange(3)
    assert distributed.all_reduce_(t, "x") is t and distributed.broadcast_(t, "x") is t and t.tolist() == [0, 1, 2]
    assert distributed.any_process(True) and not distributed.any_process(False)
    assert distributed.gather("a") == ["a"] and distributed.rank() == 0 and distributed.world_size() == 1
    model = torch.nn.Linear(2, 2)
    assert distributed.data_parallel(model, torch.device("cpu")) is model


def test_each_process_gets_a_device_it_can_use():
    cpu = torch.device("cpu")
    assert distributed.device_for(cpu, 1, 2) == cpu
    with pytest.raises(ConfigError, match="needs CUDA or the CPU"):
        distributed.device_for(torch.device("mps"), 0, 2)
    with pytest.raises(ConfigError, match="choose GPUs with CUDA_VISIBLE_DEVICES"):
        distributed.device_for(torch.device("cuda", 1), 0, 2)
    with pytest.raises(ConfigError, match=f"9 processes on this machine, but it has {torch.cuda.device_count()}"):
        distributed.device_for(torch.device("cuda"), 0, 9)
