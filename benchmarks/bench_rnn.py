"""Recurrent layers: one training step of nn.LSTM / nn.GRU, tensorcalc vs PyTorch, 1 and 2 threads.

Workload (issue 10): T = 32 steps, batch 32, input 128, hidden 128, float32; loss = mean of the
outputs squared; forward + backward + SGD step. tensorcalc's ``nn.LSTM``/``nn.GRU`` (one GEMM
for the input projection of all steps, one fused node for the time loop: ops/rnn.py) against
PyTorch's fused ``nn.LSTM``/``nn.GRU``; targets ≤ 1.25×. For reference, the same LSTM as a
Python loop of the cell composite (``F.lstm_cell``: affine, σ, tanh per step) shows what
the fused primitive buys (DESIGN §2 rule 3).

Also: one training iteration of the char-lstm recipe's model (embedding 64, LSTM 2×192,
77 characters, batch 32 × 64 characters, cross-entropy, clipping, AdamW) against the same model
in PyTorch.

Run:  .venv-bench/bin/python benchmarks/bench_rnn.py [--quick] [--write] [--threads N]
(without --threads: 1 and then 2 threads, in one process)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402
import tensorcalc.functional as F  # noqa: E402

TARGET = 1.25
T, B, I, H = 32, 32, 128, 128
LR = 0.01


def make_tc(kind, x_np):
    cls = {"lstm": tc.nn.LSTM, "gru": tc.nn.GRU}[kind]
    m = cls(I, H, rng=0)
    ps = list(m.parameters())

    def step():
        out, _ = m(x_np)
        loss = (out * out).mean()
        loss.backward()
        with tc.no_grad():
            for p in ps:
                p.data -= LR * p.grad.data
                p.grad = None
        return loss
    return m, step


def make_tc_cells(m, x_np):
    """The same LSTM as a loop of the cell composite (no fused primitive)."""
    w = [m.weight_ih_l0, m.weight_hh_l0, m.bias_ih_l0, m.bias_hh_l0]

    def step():
        h = np.zeros((B, H), np.float32)
        c = np.zeros((B, H), np.float32)
        outs = []
        for t in range(T):
            h, c = F.lstm_cell(x_np[t], h, c, *w)
            outs.append(h)
        out = tc.stack(outs, axis=0)
        loss = (out * out).mean()
        loss.backward()
        with tc.no_grad():
            for p in w:
                p.data -= LR * p.grad.data
                p.grad = None
        return loss
    return step


def make_torch(kind, m_tc, x_np):
    import torch

    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    m = cls(I, H)
    m.load_state_dict({k: torch.tensor(np.asarray(v.data)) for k, v in m_tc.named_parameters()})
    x = torch.tensor(x_np)
    ps = list(m.parameters())

    def step():
        out, _ = m(x)
        loss = (out * out).mean()
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss
    return step


def make_charlm(x_np, y_np):
    from tensorcalc.models.char_lm import CharLM
    from tensorcalc.optim.clip import clip_grad_norm_

    m = CharLM(77, 64, 192, 2, rng=0)
    opt = tc.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.01)

    def step():
        z, _ = m(x_np)
        loss = F.cross_entropy(z.reshape(-1, 77), y_np.reshape(-1))
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss
    return m, step


def make_charlm_torch(m_tc, x_np, y_np):
    import torch

    class LM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(77, 64)
            self.rnn = torch.nn.LSTM(64, 192, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(192, 77)

        def forward(self, x):
            return self.head(self.rnn(self.embed(x))[0])

    m = LM()
    sd = {k: torch.tensor(np.asarray(v.data)) for k, v in m_tc.named_parameters()}
    m.load_state_dict(sd)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=0.01)
    x, y = torch.tensor(x_np), torch.tensor(y_np)

    def step():
        z = m(x)
        loss = torch.nn.functional.cross_entropy(z.reshape(-1, 77), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        return loss
    return step


def run(threads, quick, have_torch):
    common.set_threads(threads)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((T, B, I)).astype(np.float32)
    rep = 8 if quick else 30
    rows = []
    for kind in ("lstm", "gru"):
        m, tc_step = make_tc(kind, x_np)
        fns = {"tensorcalc": tc_step}
        if have_torch:
            m2, s2 = make_tc(kind, x_np)
            a = float(s2().data)
            b = float(make_torch(kind, m, x_np)().item())
            assert abs(a - b) < 1e-4 * max(1.0, abs(b)), (kind, a, b)
            fns["pytorch"] = make_torch(kind, m, x_np)
        if kind == "lstm":
            fns["cells"] = make_tc_cells(make_tc(kind, x_np)[0], x_np)
        stats = common.compare(fns, repeat=rep)
        case = f"nn.{kind.upper()} T={T} B={B} in={I} hidden={H}, f32 fwd+bwd+SGD, {threads} thread"
        rows.append(common.row_from_stats("rnn", case, stats, target=TARGET))
        if "cells" in stats:
            rows.append(common.row_from_stats(
                "rnn", f"LSTM as a loop of F.lstm_cell (no fused scan), same workload, {threads} "
                "thread", stats, tc_key="cells", note="reference: what the fused primitive buys"))
    xc = rng.integers(0, 77, (32, 64))
    yc = rng.integers(0, 77, (32, 64))
    mc, sc = make_charlm(xc, yc)
    fns = {"tensorcalc": sc}
    if have_torch:
        fns["pytorch"] = make_charlm_torch(mc, xc, yc)
    stats = common.compare(fns, repeat=max(5, rep // 3))
    rows.append(common.row_from_stats(
        "rnn", f"char-lstm iteration: emb 64, LSTM 2×192, batch 32×64, AdamW + clip, "
        f"{threads} thread", stats))
    return rows


def main():
    ap = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    args = ap.parse_args()
    have_torch = common.torch_available()
    info = common.machine_info()  # load average before the run
    rows = []
    for threads in common.thread_counts(args):
        rows += run(threads, args.quick, have_torch)
    common.print_rows(rows)
    common.dump_json(args.json, rows)
    if args.write:
        body = "\n".join([f"### Recurrent layers (bench_rnn.py), {common.stamp()}", "",
                          common.machine_md(info), f"- load average at end: "
                          f"{common.load_at_end(info)}", "", common.rows_table(rows), ""])
        common.write_section("rnn", body)


if __name__ == "__main__":
    main()
