"""Smoke runs of the sequence recipes (a few steps; loss goes down) and `tensorcalc generate`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tensorcalc.cli import main
from tensorcalc.recipes import train_recipe
from tensorcalc.recipes.char_ngram import ngram_nats


@pytest.fixture(scope="module")
def char_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("char") / "run"
    res = train_recipe("char-lstm", {"steps": 40, "eval_every": 20, "hidden": 48, "layers": 1,
                                     "embed": 16, "batch_size": 16, "bptt": 32, "lr": 1e-2,
                                     "full_eval": False, "limit": 200_000, "sample_length": 40},
                       out_dir=str(out), quiet=True, progress=False)
    return out, res


def test_char_lstm_smoke_loss_goes_down(char_run):
    out, res = char_run
    h = res.history
    assert h[-1]["val_loss"] < h[0]["val_loss"] < math.log(77) + 0.1
    assert h[-1]["train_loss"] < 3.5  # from ln 77 = 4.34 at the start
    assert res.test["val_bpc"] == pytest.approx(res.test["val_nats"] / math.log(2))
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["samples"]) == {"0.5", "0.8", "1.0"}
    assert all(s.startswith("ROMEO:\n") and len(s) == 7 + 40 for s in m["samples"].values())


def test_char_lstm_cosine_schedule_is_stepped_once_per_step(char_run):
    # lr at step 20 of 40 is the cosine's midpoint; at step 40 its floor (lr × 0.05). A schedule
    # stepped twice per update (by the step and by the Loop) would be back at its peak.
    _, res = char_run
    lr0, floor = 1e-2, 1e-2 * 0.05
    by_step = {r["step"]: r["lr"] for r in res.history}
    assert by_step[20] == pytest.approx(floor + (lr0 - floor) * 0.5, rel=1e-9)
    assert by_step[40] == pytest.approx(floor, rel=1e-9)


def test_char_lstm_resumes_where_it_stopped(tmp_path, monkeypatch):
    import os
    import signal

    from tensorcalc.recipes import char_lstm
    from tensorcalc.train import TrainingInterrupted

    cfg = {"steps": 20, "eval_every": 10, "checkpoint_every": 5, "hidden": 16, "layers": 1,
           "embed": 8, "batch_size": 8, "bptt": 16, "full_eval": False, "limit": 50_000,
           "sample_length": 10}
    ref = train_recipe("char-lstm", cfg, out_dir=str(tmp_path / "ref"), quiet=True,
                       progress=False)
    real = char_lstm.TBPTTStep.step
    calls = []

    def ctrl_c_at_13(self, batch):
        calls.append(1)
        if len(calls) == 13:
            os.kill(os.getpid(), signal.SIGINT)  # the Loop saves after this step and stops
        return real(self, batch)

    monkeypatch.setattr(char_lstm.TBPTTStep, "step", ctrl_c_at_13)
    with pytest.raises(TrainingInterrupted):
        train_recipe("char-lstm", cfg, out_dir=str(tmp_path / "run"), quiet=True,
                     progress=False)
    monkeypatch.undo()
    res = train_recipe("char-lstm", {}, out_dir=str(tmp_path / "run"), resume=True,
                       quiet=True, progress=False)
    assert [r["step"] for r in res.history] == [10, 20]
    assert res.history[-1]["train_loss"] == ref.history[-1]["train_loss"]
    assert res.history[-1]["val_loss"] == ref.history[-1]["val_loss"]


def test_generate_cli_deterministic_for_a_seed(char_run, capsys):
    out, _ = char_run
    args = ["generate", str(out), "--prompt", "KING:", "--length", "80", "--top-k", "10",
            "--seed", "5"]
    assert main(list(args)) == 0
    a = capsys.readouterr().out
    assert main(list(args)) == 0
    b = capsys.readouterr().out
    assert main(args[:-1] + ["6"]) == 0
    c = capsys.readouterr().out
    assert a == b and a != c and a.startswith("KING:") and len(a.rstrip("\n")) == 85
    assert main(["generate", str(out), "--prompt", "ROMEO\u00e9"]) == 2  # é: never seen
    assert "never saw" in capsys.readouterr().err


def test_ngram_counts_match_a_hand_computed_bigram():
    # text "abab" over V = 2: bigram counts ab: 2, ba: 1; context counts a: 2, b: 1
    train = np.array([0, 1, 0, 1])
    val = np.array([0, 1, 1])  # predicts b after a, then b after b
    k = 0.5
    p_ab = (2 + k) / (2 + 2 * k)
    p_bb = (0 + k) / (1 + 2 * k)
    want = -(math.log(p_ab) + math.log(p_bb)) / 2
    assert ngram_nats(train, val, 2, 2, [k])[k] == pytest.approx(want, rel=1e-12)
    assert ngram_nats(train, val, 1, 2, [k])[k] == pytest.approx(
        -(math.log((2 + k) / (4 + 2 * k)) * 3) / 3, rel=1e-12)


def test_seq_mnist_smoke_loss_goes_down(tmp_path):
    res = train_recipe("seq-mnist", {"epochs": 2, "limit": 512, "hidden": 32, "cell": "gru",
                                     "lr": 1e-2},
                       out_dir=str(tmp_path / "run"), quiet=True, progress=False, report=False)
    h = res.history
    assert h[-1]["train_loss"] < h[0]["train_loss"] - 0.1


def test_vanishing_gradients_study_small(tmp_path):
    res = train_recipe("vanishing-gradients", {"hidden": 16, "T": 30, "train_T": 20,
                                               "train_steps": 30, "explode_steps": 10,
                                               "explode_gain": 2.0},
                       out_dir=str(tmp_path / "run"), quiet=True, progress=False)
    t = res.test
    assert set(t) == {"rnn-tanh", "rnn-relu", "lstm", "gru"}
    # at initialisation every gradient decays with the distance (PyTorch's init, no training)
    assert all(v["ratio_init"] < 1e-2 for v in t.values())
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    no_clip, clipped = m["exploding"].values()
    assert max(no_clip["grad_norm"]) > 1e3 and max(clipped["grad_norm"][1:]) < 1e3
    assert all(math.isfinite(v) for v in clipped["loss"])
    assert (tmp_path / "run" / "vanishing.png").exists()


def test_char_lstm_refuses_settings_it_would_ignore(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "char-lstm", "--optimizer", "sgd", "--out", str(out)]) == 2
    assert "AdamW" in capsys.readouterr().err
    assert main(["train", "char-lstm", "--epochs", "3", "--out", str(out)]) == 2
    assert "--steps" in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory was made


def test_char_lstm_small_limits_work_or_say_why(tmp_path, capsys):
    out = tmp_path / "small"
    assert main(["train", "char-lstm", "--limit", "64", "--steps", "2", "--out", str(out)]) == 2
    assert "too few" in capsys.readouterr().err  # not "64 inputs but 63 targets"
    assert main(["train", "char-lstm", "--limit", "5000", "--steps", "2", "--eval-every", "1",
                 "--hidden", "8", "--embed", "4", "--layers", "1", "--no-full-eval",
                 "--sample-length", "5", "--out", str(tmp_path / "ok")]) == 0
    assert "for 2 steps" in capsys.readouterr().out
