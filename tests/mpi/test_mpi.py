"""glow train, eval and check on many processes under the real mpirun (OpenMPI): the same
global batch on 1, 2 and 4 processes gives the same run up to the summation order of
floats, a run resumes on another number of processes, and faults end the job with a
message instead of a hang. Run by `make test` when the build found mpicc.

Tolerances (docs/DISTRIBUTED.md): after 20 steps the weights, both Adam moments and the
Polyak average agree to 1e-12 (absolute; the largest weight is about 7) in the double
build, where the differences come only from adding the shards' gradients in another order;
in the float build to 1e-5 of each section's largest value."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from glow_checkpoint import read_checkpoint  # noqa: E402

GLOW = {"float": os.path.join(ROOT, "glow"), "double": os.path.join(ROOT, "build", "glow_f64")}
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--bind-to", "none"]
# A small model that still has both levels, affine couplings, LU 1x1 convolutions and the
# learned priors; warm-up off so that 20 steps move the weights.
MODEL = ["--levels", "2", "--depth", "2", "--width", "16", "--batch", "16", "--init-batch", "48",
         "--eval-n", "100", "--sample-every", "0", "--warmup", "0", "--log-every", "5",
         "--threads", "1"]


def launch(n, args, build="float", timeout=300):
    """glow ARGS on n processes (n = 0: plainly, without mpirun)."""
    cmd = ([GLOW[build]] if n == 0 else MPIRUN + ["-np", str(n), GLOW[build]]) + args
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def train(n, out, steps, build="float", extra=()):
    r = launch(n, ["train", *MODEL, "--steps", str(steps), "--out", str(out), *extra], build)
    assert r.returncode == 0, r.stderr
    return r


def max_differences(a, b):
    """Per section (params, moments, average): the largest difference and value."""
    ca, cb = read_checkpoint(str(a)), read_checkpoint(str(b))
    assert ca["state"] == cb["state"]
    return {k: (float(np.max(np.abs(ca["sections"][k] - cb["sections"][k]))),
                float(np.max(np.abs(ca["sections"][k]))))
            for k in ca["sections"]}


def assert_same_run(a, b, build):
    for name, (diff, largest) in max_differences(a, b).items():
        tol = 1e-12 if build == "double" else 1e-5 * largest
        assert diff <= tol, f"{name}: differs by {diff:.3g} (tolerance {tol:.3g})"


def last_test_bpd(out):
    lines = open(os.path.join(out, "metrics.jsonl")).read().splitlines()
    return [float(m.group(1)) for m in map(re.compile(r'"test_bpd":([0-9.]+)').search, lines) if m][-1]


@pytest.mark.parametrize("build", ["double", "float"])
def test_same_weights_on_1_2_and_4_processes(tmp_path, build):
    train(0, tmp_path / "p1", 20, build)
    for n in (2, 4):
        train(n, tmp_path / f"p{n}", 20, build)
        assert_same_run(tmp_path / "p1" / "checkpoint.glow", tmp_path / f"p{n}" / "checkpoint.glow", build)
        assert abs(last_test_bpd(tmp_path / f"p{n}") - last_test_bpd(tmp_path / "p1")) < 1e-4


def test_resume_on_another_number_of_processes(tmp_path):
    """2 processes to step 10, then 4 to step 20 (and 4, then 1), against 1 throughout;
    class-conditional with additive couplings, so that the labels' shards count too."""
    extra = ["--coupling", "additive", "--ycond", "--weight-y", "0.01"]
    train(0, tmp_path / "one", 20, "double", extra)
    for first, then in ((2, 4), (4, 0)):
        out = tmp_path / f"{first}to{then}"
        train(first, out, 10, "double", extra)
        r = train(then, out, 20, "double", [*extra, "--resume"])
        assert "resuming" in r.stderr
        assert_same_run(tmp_path / "one" / "checkpoint.glow", out / "checkpoint.glow", "double")


def test_eval_and_check_give_one_process_figures(tmp_path):
    train(0, tmp_path, 10)
    ck = str(tmp_path / "checkpoint.glow")
    evals = [launch(n, ["eval", "--checkpoint", ck, "--n", "333", "--batch", "50", "--json"])
             for n in (0, 2, 3)]
    assert all(r.returncode == 0 for r in evals), [r.stderr for r in evals]
    assert [len(r.stdout.splitlines()) for r in evals] == [1, 1, 1]  # rank 0 reports
    bpd = [float(re.search(r'"bpd":([0-9.]+)', r.stdout).group(1)) for r in evals]
    assert max(bpd) - min(bpd) < 1e-6, bpd
    checks = [launch(n, ["check", "--checkpoint", ck, "--n", "300", "--batch", "64"]) for n in (0, 2)]
    assert all(r.returncode == 0 for r in checks), [r.stderr for r in checks]
    figures = [re.sub(r"\([0-9.]+ s\)", "", r.stdout) for r in checks]
    assert figures[0] == figures[1] and "300 images" in figures[0], figures


def test_step_not_finite_on_one_process_is_skipped_on_all():
    """tests/mpi/skip_one.c: process 1 alone gets a NaN weight for one step."""
    r = subprocess.run(MPIRUN + ["-np", "2", os.path.join(ROOT, "build", "test_mpi_skip")],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_batch_that_does_not_divide_is_refused(tmp_path):
    r = launch(2, ["train", *MODEL, "--batch", "15", "--steps", "5", "--out", str(tmp_path)])
    assert r.returncode == 1
    assert "batch 15 does not divide among 2 processes" in r.stderr
    assert not os.path.exists(tmp_path / "checkpoint.glow")


def test_other_commands_refuse_many_processes(tmp_path):
    r = launch(2, ["sample", "--checkpoint", "x.glow", "--out", str(tmp_path / "s.png")])
    assert r.returncode != 0 and "only train, eval and check run under mpirun" in r.stderr


def test_process_without_its_data_stops_the_job(tmp_path):
    """Process 1 is given a data path it cannot read (mpirun's MPMD form)."""
    missing = str(tmp_path / "nowhere")
    args = ["train", *MODEL, "--steps", "5", "--out", str(tmp_path / "run")]
    cmd = MPIRUN + ["-np", "1", GLOW["float"], *args, ":", "-np", "1", GLOW["float"], *args,
                    "--data", missing]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert time.time() - t0 < 60
    assert r.returncode == 1
    assert f"process 1 of 2: {missing}" in r.stderr
    assert "process 1 of 2 failed" in r.stderr  # rank 0 says why it stopped


def rank_pid(mpirun_pid, rank):
    """The pid of a process of this mpirun with this rank (from its environment)."""
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != mpirun_pid:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"OMPI_COMM_WORLD_RANK={rank}".encode() in f.read().split(b"\0"):
                    return int(pid)
        except (OSError, ValueError, IndexError):
            continue
    return None


def test_killed_process_ends_the_job_and_the_checkpoint_resumes(tmp_path):
    out = tmp_path / "run"
    ck = out / "checkpoint.glow"
    proc = subprocess.Popen(MPIRUN + ["-np", "2", GLOW["float"], "train", *MODEL, "--steps",
                                      "1000000", "--save-every", "10", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 60  # until a save after the first
        while time.time() < deadline and not (ck.exists() and read_checkpoint(str(ck))["state"]["step"] >= 10):
            time.sleep(0.2)
        victim = rank_pid(proc.pid, 1)
        assert victim, "no process of rank 1"
        os.kill(victim, signal.SIGKILL)
        t0 = time.time()
        _, err = proc.communicate(timeout=60)
        assert time.time() - t0 < 60
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "exited on signal 9" in err, err
    step = read_checkpoint(str(ck))["state"]["step"]  # intact: it verifies
    assert step >= 10
    r = launch(0, ["train", *MODEL, "--steps", str(step + 5), "--out", str(out), "--resume"])
    assert r.returncode == 0, r.stderr
    assert read_checkpoint(str(ck))["state"]["step"] == step + 5
    assert not [p for p in os.listdir(out) if ".tmp." in p]  # a killed save's is cleared


def test_sigusr1_to_mpirun_stops_every_process_after_the_same_step(tmp_path):
    """mpirun passes SIGUSR1 on; the processes agree on the step and rank 0 saves it."""
    out = tmp_path / "run"
    proc = subprocess.Popen(MPIRUN + ["-np", "2", GLOW["float"], "train", *MODEL, "--steps",
                                      "1000000", "--save-every", "100000", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signal.SIGUSR1)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    m = re.search(r"interrupted at step (\d+)", err)
    assert m and read_checkpoint(str(out / "checkpoint.glow"))["state"]["step"] == int(m.group(1)) > 0
