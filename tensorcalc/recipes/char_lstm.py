"""char-lstm — a character language model on the shipped Shakespeare (``--cell gru|rnn`` too).

The text's characters x₁..x_N are split: the first 90 % train, the last 10 % validate. The model
(:class:`tensorcalc.models.char_lm.CharLM`: embedding → recurrent layers → logits) learns
p(x_{t+1} | x_{≤t}) by minimising the cross-entropy in nats per character; bits per character
= nats / ln 2, perplexity = e^nats.

Training is truncated backpropagation through time: the training text is cut into
``batch_size`` contiguous stripes read side by side, ``bptt`` characters at a time; the state
at the end of a chunk starts the next one, detached (the chain rule stops at the chunk border,
the information does not). Gradients are clipped to global norm ``clip``; AdamW with a cosine
schedule down to lr·``final_lr_fraction``.

Validation loss is measured on the **whole validation text** (481 K characters, read as 128
stripes in chunks of 256 with the state carried; each stripe starts from a zero state). During
training the curve uses a fixed, seeded set of 32 windows of 256 characters (loss on the last
192 of each).
"""

from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from .. import functional as F
from ..autodiff.mode import no_grad
from ..data import CharVocab, load_shakespeare
from ..models.char_lm import CELLS, CharLM
from ..optim import AdamW
from ..optim.clip import clip_grad_norm_
from ..optim.lr_scheduler import CosineAnnealingLR
from ..serialization import save_weights
from ..tensor import Tensor
from ..train.loop import Loop
from ..train.steps import Step
from . import Data, Recipe, RecipeError, RunResult, register
from ._common import char_loss_png, read_finished_run, write_markdown_report

LN2 = math.log(2.0)
_TEXT: dict = {}


def shakespeare_split():
    """(vocab, train ids, validation ids): the first 90 % of the characters and the last 10 %."""
    if "split" not in _TEXT:
        text = load_shakespeare()
        vocab = CharVocab.from_text(text)
        ids = vocab.encode(text).astype(np.int64)
        k = int(len(ids) * 0.9)
        _TEXT["split"] = (vocab, ids[:k], ids[k:])
    return _TEXT["split"]


def _check_settings(cfg):
    """The settings this recipe has no use for are refused, not silently ignored."""
    if cfg.get("optimizer", "adamw") != "adamw" or cfg.get("schedule", "cosine") != "cosine":
        raise RecipeError(f"{cfg.get('recipe', 'char-lstm')} trains with AdamW and a cosine "
                          "schedule (set --lr, --weight-decay, --final-lr-fraction); got "
                          f"--optimizer {cfg.get('optimizer')} --schedule {cfg.get('schedule')}")
    if cfg.get("epochs", 1) != 1:
        raise RecipeError(f"{cfg.get('recipe', 'char-lstm')} counts updates, not epochs: use "
                          "--steps")
    for k in ("steps", "bptt", "batch_size", "hidden", "layers", "embed", "eval_every"):
        if k in cfg and (not isinstance(cfg[k], int) or cfg[k] < (0 if k == "eval_every" else 1)):
            raise RecipeError(f"--{k.replace('_', '-')} must be a positive integer, got "
                              f"{cfg[k]}")
    if not 0.0 <= cfg.get("dropout", 0.0) < 1.0:
        raise RecipeError(f"--dropout must lie in [0, 1), got {cfg['dropout']}")


def _data(cfg):
    if cfg.get("recipe") == "char-lstm":
        _check_settings(cfg)
    vocab, tr, va = shakespeare_split()
    if cfg.get("limit"):
        tr = tr[:cfg["limit"]]
    n = min(2 * 256, len(tr) - 1)  # a sample of (character, next character) pairs
    return Data(name="shakespeare", task="multiclass", train=(tr[:n, None], tr[1:n + 1]),
                test=(va[:n, None], va[1:n + 1]), num_classes=len(vocab),
                title="Shakespeare (first 90 % train, last 10 % validation)")


def _model(cfg, data, rng):
    return CharLM(data.num_classes, cfg["embed"], cfg["hidden"], cfg["layers"], cfg["cell"],
                  cfg["dropout"], rng=rng)


class TBPTTStep(Step):
    """One truncated-BPTT update on the next ``bptt`` characters of every stripe; the state is
    carried (detached) and saved with checkpoints, so a resumed run continues exactly."""

    def __init__(self, model, optimizer, schedule, ids, batch_size, bptt, clip):
        super().__init__()
        self.modules = {"model": model}
        self.optimizers = {"opt": optimizer}
        self.schedules = {"lr": schedule} if schedule is not None else {}
        self.B, self.L, self.clip = batch_size, bptt, clip
        self.stripe = (len(ids) - 1) // batch_size
        if self.stripe < bptt + 1:
            raise ValueError(f"char LM: {len(ids)} training characters are too few for "
                             f"{batch_size} stripes of {bptt + 1}")
        self.ids = ids
        self.pos = 0
        self.state = None

    def _chunk(self):
        starts = np.arange(self.B) * self.stripe + self.pos
        idx = starts[:, None] + np.arange(self.L + 1)[None, :]
        w = self.ids[idx]
        return w[:, :-1], w[:, 1:]

    def step(self, batch):
        model, opt = self.modules["model"], self.optimizers["opt"]
        if self.pos + self.L + 1 > self.stripe:
            self.pos, self.state = 0, None
        x, y = self._chunk()
        self.pos += self.L
        logits, state = model(x, self.state)
        self.state = CharLM.detach_state(state)
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
        value = self.check_finite("loss", float(loss.data))
        opt.zero_grad()
        loss.backward()
        gnorm = clip_grad_norm_(model.parameters(), self.clip) if self.clip > 0 else 0.0
        self.after_backward("model")
        opt.step()  # the Loop steps the schedule (it owns ``schedules``): once per step
        self.after_update("model")
        return {"loss": value, "bpc": value / LN2, "grad_norm": float(gnorm)}

    def state_meta(self):
        return {"pos": int(self.pos), "has_state": self.state is not None}

    def load_state_meta(self, meta):
        self.pos = int(meta.get("pos", 0))

    def state_arrays(self):
        if self.state is None:
            return {}
        parts = self.state if isinstance(self.state, tuple) else (self.state,)
        return {f"state{i}": np.asarray(p.data) for i, p in enumerate(parts)}

    def load_state_arrays(self, arrays):
        if not arrays:
            self.state = None
            return
        parts = tuple(Tensor(arrays[f"state{i}"]) for i in range(len(arrays)))
        self.state = parts if len(parts) > 1 else parts[0]

    def evaluate(self, data):
        return {"loss": window_loss(self.modules["model"], data)}


def _num(v) -> float:
    return float(v.data) if isinstance(v, Tensor) else float(v)


def window_loss(model, windows, warmup=64):
    """Mean cross-entropy (nats/char) over fixed windows (n, W+1): the model reads each window
    from a zero state; characters after the first ``warmup`` count."""
    was = model.training
    model.eval()
    try:
        with no_grad():
            logits, _ = model(windows[:, :-1])
            V = logits.shape[-1]
            z = logits.data[:, warmup:].reshape(-1, V)
            loss = F.cross_entropy(z, windows[:, warmup + 1:].reshape(-1))
            return _num(loss)
    finally:
        model.train(was)


def full_text_loss(model, ids, stripes=128, chunk=256):
    """Mean cross-entropy (nats/char) over every character of ``ids`` but the stripes' first:
    ``stripes`` contiguous stripes read side by side, the state carried across chunks."""
    was = model.training
    model.eval()
    S = (len(ids) - 1) // stripes
    total, count, state = 0.0, 0, None
    try:
        with no_grad():
            for p in range(0, S, chunk):
                n = min(chunk, S - p)
                idx = (np.arange(stripes) * S + p)[:, None] + np.arange(n + 1)[None, :]
                w = ids[idx]
                logits, state = model(w[:, :-1], state)
                V = logits.shape[-1]
                loss = F.cross_entropy(logits.data.reshape(-1, V), w[:, 1:].reshape(-1),
                                       reduction="sum")
                total += _num(loss)
                count += w[:, 1:].size
    finally:
        model.train(was)
    return total / count, count


def _run(cfg, run_dir, quiet=False, progress=None, resume=False):
    vocab, tr, va = shakespeare_split()
    if cfg.get("limit"):
        tr = tr[:cfg["limit"]]
    seed = cfg["seed"]
    rng = np.random.default_rng(seed)
    model = _model(cfg, Data(name="shakespeare", task="multiclass", train=(tr, tr),
                             test=(va, va), num_classes=len(vocab)), rng)
    opt = AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps = cfg["steps"]
    sched = CosineAnnealingLR(opt, T_max=steps, eta_min=cfg["lr"] * cfg["final_lr_fraction"])
    step = TBPTTStep(model, opt, sched, tr, cfg["batch_size"], cfg["bptt"], cfg["clip"])
    wr = np.random.default_rng(seed + 1)
    W = 256
    starts = wr.integers(0, len(va) - W - 1, size=32)
    windows = va[starts[:, None] + np.arange(W + 1)[None, :]]
    if not quiet:
        print(f"char-{cfg['cell']}: {len(vocab)} characters, {len(tr):,} training / {len(va):,} "
              f"validation; {model.num_parameters():,} parameters; {steps} steps of "
              f"{cfg['batch_size']}×{cfg['bptt']} characters", flush=True)
    loop = Loop(step, None, steps=steps, val_data=windows, out_dir=run_dir, quiet=quiet,
                progress=progress, config=cfg, eval_every=cfg["eval_every"] or None,
                checkpoint_every=cfg["checkpoint_every"] or None)
    last = os.path.join(run_dir, "checkpoints", "last")
    history = loop.run(resume_from=last if resume and os.path.isdir(last) else None)
    train_s = loop.train_seconds  # counted across resumes
    save_weights(model.state_dict(), os.path.join(run_dir, "model.safetensors"))
    with open(os.path.join(run_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({"chars": vocab.chars}, f)
    t1 = time.perf_counter()
    nats, count = full_text_loss(model, va) if cfg["full_eval"] else (history[-1]["val_loss"], 0)
    eval_s = time.perf_counter() - t1
    samples = {}
    prompt = vocab.encode("ROMEO:\n")
    for temp in (0.5, 0.8, 1.0):
        out = model.sample(prompt, cfg["sample_length"], temperature=temp, rng=seed)
        samples[str(temp)] = "ROMEO:\n" + vocab.decode(out)
    test = {"val_nats": nats, "val_bpc": nats / LN2, "val_perplexity": math.exp(nats),
            "val_characters": count, "train_seconds": train_s, "eval_seconds": eval_s,
            "seconds_per_step": train_s / max(steps, 1), "parameters": model.num_parameters(),
            "estimate": "whole validation text" if cfg["full_eval"] else "32 seeded windows"}
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"test": test, "samples": samples}, f, indent=1)
    report = _report(run_dir, cfg, history, test, samples)
    if not quiet:
        print(f"validation: {nats:.4f} nats/char = {nats / LN2:.4f} bits/char "
              f"(perplexity {math.exp(nats):.2f}) on {test['estimate']}; training "
              f"{train_s:.0f} s ({train_s / max(steps, 1):.3f} s/step)")
        print(f"sample (T = 0.8):\n{samples['0.8']}")
    return RunResult(run_dir=run_dir, test=test, report=report, history=history,
                     train_seconds=train_s, config=cfg, model=model,
                     extra={"samples": samples})


def _report(run_dir, cfg, history, test, samples):
    char_loss_png(run_dir, history, f"char-{cfg['cell']} on Shakespeare", 1.662,
                  "5-gram baseline 1.662")
    lines = [f"# char-{cfg['cell']} on Shakespeare", "",
             f"Validation ({test['estimate']}): **{test['val_nats']:.4f} nats/char = "
             f"{test['val_bpc']:.4f} bits/char**, perplexity {test['val_perplexity']:.2f}.",
             f"Training: {test['train_seconds']:.0f} s, {test['seconds_per_step']:.3f} s/step, "
             f"{test['parameters']:,} parameters.", "", "![loss](loss.png)", ""]
    for t, txt in samples.items():
        lines += [f"## Sample at temperature {t}", "", "```", txt, "```", ""]
    return write_markdown_report(run_dir, lines)


def load_char_model(run_dir):
    """(model, vocab) of a finished char-lstm run: config.json, vocab.json, model.safetensors."""
    from ..serialization import load_into

    cfg, v, weights = read_finished_run(run_dir, "generate", "char-lstm")
    vocab = CharVocab(v["chars"])
    model = CharLM(len(vocab), cfg["embed"], cfg["hidden"], cfg["layers"], cfg["cell"], 0.0,
                   rng=0)
    load_into(model, weights)
    return model, vocab


def generate(run_dir, prompt="ROMEO:", length=500, temperature=0.8, top_k=None, seed=0):
    """Text sampled from a trained char-lstm run: ``prompt`` followed by ``length`` characters
    (softmax at ``temperature``, optionally only the ``top_k`` most likely); deterministic for
    a seed."""
    model, vocab = load_char_model(run_dir)
    if not prompt:
        raise ValueError("generate: the prompt must have at least one character")
    bad = sorted({c for c in prompt if c not in vocab})
    if bad:
        raise ValueError(f"generate: the prompt has characters the model never saw: {bad}")
    if length < 0 or temperature <= 0 or (top_k is not None and top_k < 1):
        raise ValueError(f"generate: need length >= 0, temperature > 0 and top_k >= 1, got "
                         f"{length}, {temperature}, {top_k}")
    out = model.sample(vocab.encode(prompt), length, temperature, top_k, rng=seed)
    return prompt + vocab.decode(out)


register(Recipe(
    name="char-lstm",
    description="character language model (embedding, LSTM/GRU/RNN layers, softmax)",
    defaults={"steps": 3000, "batch_size": 32, "bptt": 64, "lr": 3e-3, "optimizer": "adamw",
              "schedule": "cosine",
              "weight_decay": 0.01, "final_lr_fraction": 0.05, "clip": 1.0, "embed": 64,
              "hidden": 192, "layers": 2, "cell": "lstm", "dropout": 0.0, "eval_every": 200,
              "full_eval": True, "sample_length": 400, "epochs": 1},
    data=_data, model=_model, run=_run, resumable=True,
    help={"steps": "updates (truncated-BPTT chunks)", "bptt": "characters per chunk",
          "clip": "gradient clipping: global norm (0: none)", "cell": "lstm | gru | rnn",
          "hidden": "hidden units per layer", "layers": "recurrent layers",
          "embed": "character embedding size", "eval_every": "steps between validations",
          "final_lr_fraction": "cosine schedule ends at lr × this",
          "full_eval": "score the whole validation text at the end (else the 32 windows)",
          "sample_length": "characters per sample in the report"},
    choices={"cell": CELLS},
))
