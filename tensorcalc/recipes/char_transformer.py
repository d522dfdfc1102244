"""char-transformer — a GPT-style character model on the shipped Shakespeare (same split and
metrics as ``char-lstm``: first 90 % train, last 10 % validation, nats per character).

nanoGPT's CPU configuration by default: 4 layers, 4 heads, 128 dimensions, block 64, batch 12,
AdamW (β₂ = 0.99, weight decay 0.1) at 1e-3 with 100 warm-up steps and a cosine decay to 1e-4
over 2,000 iterations, dropout 0, gradient clipping at 1. Each step trains on ``batch_size``
random windows of ``block`` characters, every position predicting the next one.

Validation: during training, 32 seeded windows (every position counts, as nanoGPT's estimate);
at the end the **whole validation text** with sliding windows of ``block`` characters moved by
block/2, each character scored once with at least block/2 characters of context (the model
cannot carry a state across windows as the LSTM does).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .. import functional as F
from ..autodiff.mode import no_grad
from ..data import CharVocab
from ..models.char_gpt import CharGPT
from ..optim import AdamW
from ..optim.clip import clip_grad_norm_
from ..optim.lr_scheduler import LambdaLR
from ..serialization import save_weights
from ..tensor import Tensor
from ..train.loop import Loop
from ..train.steps import Step
from . import Data, Recipe, RunResult, register
from ._common import char_loss_png, read_finished_run, write_markdown_report
from .char_lstm import LN2, shakespeare_split


def _model(cfg, vocab_size, rng):
    return CharGPT(vocab_size, cfg["n_layer"], cfg["n_head"], cfg["n_embd"], cfg["block"],
                   cfg["dropout"], rng=rng)


def warmup_cosine(warmup, total, final_fraction):
    """λ(t): linear warm-up over ``warmup`` steps, then cosine from 1 to ``final_fraction``."""
    def f(t):
        if t < warmup:
            return (t + 1) / warmup
        r = min((t - warmup) / max(total - warmup, 1), 1.0)
        return final_fraction + 0.5 * (1 - final_fraction) * (1 + math.cos(math.pi * r))
    return f


class WindowStep(Step):
    """One update on ``batch_size`` random windows (the step's own seeded Generator)."""

    def __init__(self, model, opt, sched, ids, batch_size, block, clip, seed):
        super().__init__()
        self.modules = {"model": model}
        self.optimizers = {"opt": opt}
        self.schedules = {"lr": sched}
        self.ids, self.B, self.T, self.clip = ids, batch_size, block, clip
        self.gen = np.random.default_rng(seed)

    @property
    def rngs(self):
        return {**super().rngs, "windows": self.gen}

    def step(self, batch):
        model, opt = self.modules["model"], self.optimizers["opt"]
        starts = self.gen.integers(0, len(self.ids) - self.T - 1, size=self.B)
        w = self.ids[starts[:, None] + np.arange(self.T + 1)[None, :]]
        logits, _ = model(w[:, :-1])
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), w[:, 1:].reshape(-1))
        value = self.check_finite("loss", float(loss.data))
        opt.zero_grad()
        loss.backward()
        gnorm = clip_grad_norm_(model.parameters(), self.clip) if self.clip > 0 else 0.0
        self.after_backward("model")
        opt.step()
        self.after_update("model")
        return {"loss": value, "grad_norm": float(gnorm)}

    def evaluate(self, windows):
        model = self.modules["model"]
        was = model.training
        model.eval()
        try:
            with no_grad():
                logits, _ = model(windows[:, :-1])
                V = logits.shape[-1]
                loss = F.cross_entropy(logits.data.reshape(-1, V), windows[:, 1:].reshape(-1))
        finally:
            model.train(was)
        return {"loss": float(loss.data) if isinstance(loss, Tensor) else float(loss)}


def sliding_loss(model, ids, block, batch=256):
    """Mean cross-entropy (nats/char) over ``ids``: windows of ``block`` moved by block/2; the
    first window scores all its positions, later ones their second half."""
    was = model.training
    model.eval()
    h = block // 2
    starts = list(range(0, len(ids) - block - 1 + 1, h))
    total, count = 0.0, 0
    try:
        with no_grad():
            for i in range(0, len(starts), batch):
                s = np.array(starts[i:i + batch])
                w = ids[s[:, None] + np.arange(block + 1)[None, :]]
                z = np.asarray(model(w[:, :-1])[0].data, dtype=np.float64)
                lp = z - z.max(-1, keepdims=True)
                lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
                nll = -np.take_along_axis(lp, w[:, 1:, None], -1)[..., 0]
                first = s == 0
                total += nll[first].sum() + nll[~first, h:].sum()
                count += nll[first].size + nll[~first, h:].size
    finally:
        model.train(was)
    return total / count, count


def _run(cfg, run_dir, quiet=False, progress=None):
    vocab, tr, va = shakespeare_split()
    if cfg.get("limit"):
        tr = tr[:cfg["limit"]]
    seed = cfg["seed"]
    model = _model(cfg, len(vocab), np.random.default_rng(seed))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                 {"params": no_decay, "weight_decay": 0.0}], lr=cfg["lr"],
                betas=(0.9, cfg["beta2"]))
    steps = cfg["steps"]
    sched = LambdaLR(opt, warmup_cosine(cfg["warmup"], steps, cfg["final_lr_fraction"]))
    step = WindowStep(model, opt, sched, tr, cfg["batch_size"], cfg["block"], cfg["clip"],
                      seed + 7)
    wr = np.random.default_rng(seed + 1)
    starts = wr.integers(0, len(va) - cfg["block"] - 1, size=32)
    windows = va[starts[:, None] + np.arange(cfg["block"] + 1)[None, :]]
    if not quiet:
        print(f"char-transformer: {len(vocab)} characters, {model.num_parameters():,} "
              f"parameters; {steps} steps of {cfg['batch_size']}×{cfg['block']}", flush=True)
    loop = Loop(step, None, steps=steps, val_data=windows, out_dir=run_dir, quiet=quiet,
                progress=progress, config=cfg, eval_every=cfg["eval_every"] or None,
                checkpoint_every=cfg["checkpoint_every"] or None)
    t0 = time.perf_counter()
    history = loop.run()
    train_s = time.perf_counter() - t0
    save_weights(model.state_dict(), os.path.join(run_dir, "model.safetensors"))
    with open(os.path.join(run_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({"chars": vocab.chars}, f)
    t1 = time.perf_counter()
    if cfg["full_eval"]:
        nats, count = sliding_loss(model, va, cfg["block"])
    else:
        nats, count = history[-1]["val_loss"], 0
    eval_s = time.perf_counter() - t1
    prompt = vocab.encode("ROMEO:\n")
    samples = {str(t): "ROMEO:\n" + vocab.decode(model.sample(prompt, cfg["sample_length"], t,
                                                               rng=seed))
               for t in (0.5, 0.8, 1.0)}
    test = {"val_nats": nats, "val_bpc": nats / LN2, "val_perplexity": math.exp(nats),
            "val_characters": count, "train_seconds": train_s, "eval_seconds": eval_s,
            "seconds_per_step": train_s / max(steps, 1), "parameters": model.num_parameters(),
            "last_window_val_loss": history[-1].get("val_loss") if history else None,
            "estimate": "whole validation text (sliding windows)" if cfg["full_eval"]
            else "32 seeded windows"}
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"test": test, "samples": samples}, f, indent=1)
    report = _report(run_dir, history, test, samples)
    if not quiet:
        print(f"validation: {nats:.4f} nats/char = {nats / LN2:.4f} bits/char on "
              f"{test['estimate']}; {train_s / max(steps, 1):.3f} s/step")
        print(f"sample (T = 0.8):\n{samples['0.8']}")
    return RunResult(run_dir=run_dir, test=test, report=report, history=history,
                     train_seconds=train_s, config=cfg, model=model, extra={"samples": samples})


def _report(run_dir, history, test, samples):
    char_loss_png(run_dir, history, "char-transformer on Shakespeare", 1.90, "target 1.90")
    lines = ["# char-transformer on Shakespeare", "",
             f"Validation ({test['estimate']}): **{test['val_nats']:.4f} nats/char**; "
             f"{test['seconds_per_step']:.3f} s/step, {test['parameters']:,} parameters.", "",
             "![loss](loss.png)", ""]
    for t, txt in samples.items():
        lines += [f"## Sample at temperature {t}", "", "```", txt, "```", ""]
    return write_markdown_report(run_dir, lines)


def generate_any(run_dir, prompt="ROMEO:", length=500, temperature=0.8, top_k=None, seed=0):
    """``tensorcalc generate``: text from a char-transformer run, else from a char-lstm run."""
    from ..serialization import load_into
    from . import char_lstm

    cfg_path = os.path.join(run_dir, "config.json")
    cfg = {}
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    if "n_layer" not in cfg:
        return char_lstm.generate(run_dir, prompt, length, temperature, top_k, seed)
    cfg, v, weights = read_finished_run(run_dir, "generate", "char-transformer")
    vocab = CharVocab(v["chars"])
    model = _model({**cfg, "dropout": 0.0}, len(vocab), np.random.default_rng(0))
    load_into(model, weights)
    bad = sorted({c for c in prompt if c not in vocab})
    if not prompt or bad:
        raise ValueError(f"generate: the prompt must be non-empty and use only characters the "
                         f"model saw (unknown: {bad})")
    out = model.sample(vocab.encode(prompt), length, temperature, top_k, rng=seed)
    return prompt + vocab.decode(out)


def _data(cfg):
    vocab, tr, va = shakespeare_split()
    return Data(name="shakespeare", task="multiclass", train=(tr[:64, None], tr[1:65]),
                test=(va[:64, None], va[1:65]), num_classes=len(vocab),
                title="Shakespeare (first 90 % train, last 10 % validation)")


register(Recipe(
    name="char-transformer",
    description="GPT-style character transformer (causal self-attention, KV-cache sampling)",
    defaults={"steps": 2000, "batch_size": 12, "block": 64, "n_layer": 4, "n_head": 4,
              "n_embd": 128, "dropout": 0.0, "lr": 1e-3, "optimizer": "adamw",
              "weight_decay": 0.1, "beta2": 0.99, "warmup": 100, "final_lr_fraction": 0.1,
              "clip": 1.0, "eval_every": 250, "full_eval": True, "sample_length": 400,
              "limit": 0, "epochs": 1},
    data=_data, model=lambda cfg, data, rng: _model(cfg, data.num_classes, rng), run=_run,
    help={"block": "context length (characters)", "n_layer": "transformer blocks",
          "n_head": "attention heads", "n_embd": "model width", "warmup": "linear warm-up steps",
          "final_lr_fraction": "cosine ends at lr × this",
          "full_eval": "score the whole validation text at the end (else the 32 windows)",
          "limit": "use only the first N training characters (0: all)"},
))
