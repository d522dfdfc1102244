"""tensorcalc.distributed: sharding, buckets, and 2-process jobs launched with the venv's mpiexec.

The 2-process jobs run tests/distributed/mpi_job.py (a Trainer on seeded random data, global
batch 16, Adam, dropout and a noise augmentation) under ``mpiexec -n 2``; the 1-process
references run the same script in this process. Tolerance: the weights of P processes equal one
process's up to float32 reassociation of the gradient sum (Σ_r w_r g_r instead of one batched
sum): ≤ 1e-5 absolute after 6-12 Adam steps (measured ~1e-7).
"""

import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc.distributed import comm
from tensorcalc.distributed.allreduce import GradientAverager
from tensorcalc.distributed.sampler import Shard, ShardedGenerator, shard_loader

HERE = os.path.dirname(__file__)
JOB = os.path.join(HERE, "mpi_job.py")
BIN = os.path.dirname(sys.executable)
MPIEXEC = os.path.join(BIN, "mpiexec")
TOL = 1e-5

needs_mpi = pytest.mark.skipif(not (comm.mpi_available() and os.access(MPIEXEC, os.X_OK)),
                               reason="mpi4py/mpich not installed (pip install '.[mpi]')")


def _env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "MPI_LOCAL", "HYDRA_"))}
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def mpirun(args, n=2, timeout=60):
    t = time.perf_counter()
    p = subprocess.run([MPIEXEC, "-n", str(n), sys.executable, JOB, *args], env=_env(),
                       capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - t


def local(args):
    """The job as one process, in this process."""
    spec = importlib.util.spec_from_file_location("mpi_job", JOB)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    old = sys.argv
    sys.argv = [JOB, *args]
    try:
        assert mod.main() == 0
    finally:
        sys.argv = old


def weights(d):
    with np.load(os.path.join(d, "weights.npz")) as z:
        return {k: z[k] for k in z.files}


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ------------------------------------------------------------------ in-process pieces
def test_shards_cover_each_batch_and_draws_follow_the_rows():
    n = 7
    rows = []
    for r in range(3):
        s = Shard(r, 3)
        sl = s.split(n)
        rows.extend(range(n)[sl])
        assert s.count == sl.stop - sl.start and abs(s.weight - s.count / n) < 1e-15
    assert rows == list(range(n))  # disjoint and covering, in order
    ref = np.random.default_rng(5)
    full_u, full_k = ref.random((n, 4)), ref.integers(0, 5, n)
    scalar = ref.random()
    for r in range(3):
        s = Shard(r, 3)
        sl = s.split(n)
        g = ShardedGenerator(np.random.default_rng(5).bit_generator, s)
        assert np.array_equal(g.random((s.count, 4)), full_u[sl])
        assert np.array_equal(g.integers(0, 5, s.count), full_k[sl])
        assert g.random() == scalar  # not batch-shaped: the same draw on every rank


def test_loader_shard_keeps_global_length_and_state():
    x = np.arange(20, dtype=np.float32)[:, None]
    ds = tc.data.TensorDataset(x, np.arange(20))
    mk = lambda: tc.data.DataLoader(ds, batch_size=8, shuffle=True, rng=np.random.default_rng(3))
    full = [b[1] for b in mk()]
    parts = []
    for r in range(2):
        ld = shard_loader(mk(), Shard(r, 2))
        assert len(ld) == 3
        parts.append([np.asarray(b[1]) for b in ld])
        assert ld.state_dict()["batch_size"] == 8
    for b, (p0, p1) in enumerate(zip(*parts, strict=True)):
        assert np.array_equal(np.concatenate([p0, p1]), np.asarray(full[b]))
    with pytest.raises(ValueError, match="last batch of 1"):
        shard_loader(tc.data.DataLoader(tc.data.TensorDataset(x[:17], np.arange(17)),
                                        batch_size=8), Shard(0, 2))


def test_buckets_hold_whole_parameters_and_cover_the_buffer():
    rng = np.random.default_rng(0)
    model = tc.nn.Sequential(tc.nn.Linear(30, 20, rng=rng), tc.nn.Linear(20, 5, rng=rng))
    avg = GradientAverager(model.parameters(), comm.World(None), bucket_mb=400 * 4 / 2**20)
    starts = set(avg.flat.offsets) | {avg.numel}
    spans = sorted(avg.buckets)
    assert spans[0][0] == 0 and spans[-1][1] == avg.numel
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(lo in starts and hi in starts for lo, hi in spans) and len(spans) >= 2
    out = model(tc.tensor(rng.standard_normal((4, 30)).astype(np.float32)))
    (out ** 2).sum().backward()
    before = [p.grad.data.copy() for p in model.parameters()]
    avg.average(0.25)  # one process: only the weight applies, through the parameters' .grad
    for b, p in zip(before, model.parameters(), strict=True):
        assert np.allclose(p.grad.data, 0.25 * b)


def test_procs_without_mpi_says_how_to_install(monkeypatch, capsys):
    from tensorcalc import cli
    from tensorcalc.distributed import launch

    monkeypatch.setattr(launch, "mpi_available", lambda: False)
    assert cli.main(["train", "mlp", "--procs", "2"]) == 2
    assert "pip install 'tensorcalc[mpi]'" in capsys.readouterr().err


# ------------------------------------------------------------------ 2-process jobs
@needs_mpi
def test_mlp_two_processes_equal_one(tmp_path):
    local(["mlp", str(tmp_path / "one")])
    p, _ = mpirun(["mlp", str(tmp_path / "two")])
    assert p.returncode == 0, p.stderr
    assert max_diff(weights(tmp_path / "one"), weights(tmp_path / "two")) < TOL
    one = float(open(tmp_path / "one" / "losses.txt").read())
    two = float(open(tmp_path / "two" / "losses.txt").read())
    assert abs(one - two) < 1e-5  # rank 0 logs the global batch's loss


@needs_mpi
def test_cnn_with_dropout_equal_and_resume_across_process_counts(tmp_path):
    d = lambda name: str(tmp_path / name)
    local(["cnn", d("ref1"), "--epochs", "1"])           # 1 process, 6 steps
    local(["cnn", d("ref2"), "--epochs", "2"])           # 1 process, 12 steps
    p, _ = mpirun(["cnn", d("two"), "--epochs", "1", "--save-ckpt"])
    assert p.returncode == 0, p.stderr
    assert max_diff(weights(d("ref1")), weights(d("two"))) < TOL
    assert not os.path.exists(os.path.join(d("two"), "run", "history.csv.tmp"))
    # a 2-process checkpoint continued on 1 process ...
    local(["cnn", d("two_one"), "--epochs", "2", "--resume",
           os.path.join(d("two"), "run", "checkpoints", "last")])
    assert max_diff(weights(d("ref2")), weights(d("two_one"))) < TOL
    # ... and a 1-process checkpoint continued on 2
    local(["cnn", d("one"), "--epochs", "1", "--save-ckpt"])
    p, _ = mpirun(["cnn", d("one_two"), "--epochs", "2", "--resume",
                   os.path.join(d("one"), "run", "checkpoints", "last")])
    assert p.returncode == 0, p.stderr
    assert max_diff(weights(d("ref2")), weights(d("one_two"))) < TOL


@needs_mpi
def test_a_rank_that_raises_stops_the_job_naming_it(tmp_path):
    p, secs = mpirun(["mlp", str(tmp_path / "x"), "--epochs", "50", "--die-at", "3"],
                     timeout=60)
    assert p.returncode != 0
    assert "rank 1 of 2" in p.stderr and "injected failure at step 3" in p.stderr
    assert secs < 30


@needs_mpi
def test_a_killed_rank_ends_the_job_and_the_checkpoint_stays_loadable(tmp_path):
    p, secs = mpirun(["mlp", str(tmp_path / "x"), "--epochs", "50", "--save-ckpt",
                      "--die-at", "14", "--kill"], timeout=60)
    assert p.returncode != 0 and secs < 30
    assert "signal 9" in (p.stdout + p.stderr)
    ck = tmp_path / "x" / "run" / "checkpoints" / "last"
    st = tc.serialization.load_state(str(ck))  # verifies every file's size and hash
    assert st.meta["step"] >= 6


@needs_mpi
def test_sigterm_to_one_rank_stops_all_after_the_same_step_with_a_checkpoint(tmp_path):
    p, secs = mpirun(["mlp", str(tmp_path / "x"), "--epochs", "50", "--save-ckpt",
                      "--die-at", "8", "--sigterm"], timeout=60)
    assert p.returncode == 3, p.stderr  # both ranks left through TrainingTerminated
    assert "rank 1: stopped with the job (SIGTERM) after global step 8" in p.stderr
    assert "rank 0: terminated (SIGTERM)" in p.stderr and secs < 30
    st = tc.serialization.load_state(str(tmp_path / "x" / "run" / "checkpoints" / "last"))
    assert st.meta["step"] == 8  # rank 0 saved the step every rank stopped after


@needs_mpi
def test_map_tasks_spreads_over_ranks_and_gathers_in_order():
    code = ("from tensorcalc import distributed as d\n"
            "r = d.map_tasks(lambda i: (i * i, d.world().rank, d.active()), 5)\n"
            "assert [a for a, _, _ in r] == [0, 1, 4, 9, 16], r\n"
            "assert [b for _, b, _ in r] == [0, 1, 0, 1, 0], r\n"
            "assert not any(c for _, _, c in r)  # each task is a single-process run\n"
            "d.finish()\n")
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", code], env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@needs_mpi
def test_cli_error_on_every_rank_ends_the_job(tmp_path):
    t = time.perf_counter()
    p = subprocess.run([os.path.join(BIN, "tensorcalc"), "train", "mlp", "--lr", "0",
                        "--procs", "2", "--out", str(tmp_path / "r")], env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and time.perf_counter() - t < 30
    assert "--lr" in p.stderr and "MPI job of 2 processes failed" in p.stderr


@needs_mpi
def test_cli_procs_trains_like_one_process(tmp_path):
    # on the stand-in device (CuPy's rules): gradients and broadcasts go through the host
    args = ["train", "mlp", "--epochs", "1", "--hidden", "16", "--no-report", "--quiet",
            "--device", "standin"]
    p = subprocess.run([os.path.join(BIN, "tensorcalc"), *args, "--procs", "2", "--out",
                        str(tmp_path / "two")], env=_env(), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("test accuracy") == 1  # rank 0 alone prints
    from tensorcalc import cli

    try:
        assert cli.main([*args, "--out", str(tmp_path / "one")]) == 0
    finally:
        tc.backend.set_default_device("cpu")  # the CLI set the process's default device
    rows = [open(tmp_path / k / "history.csv").read().splitlines() for k in ("one", "two")]
    head = rows[0][0].split(",")
    cols = [i for i, h in enumerate(head) if h in ("train_loss", "val_loss", "val_acc")]
    a, b = ([float(r[1].split(",")[i]) for i in cols] for r in rows)
    assert np.allclose(a, b, rtol=1e-4, atol=1e-5), (a, b)
