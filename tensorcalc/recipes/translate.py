"""translate — Spanish → English translation on the shipped Bible pairs, split by whole books.

``--arch gru`` (default): embedding 128, bidirectional GRU encoder 2×128, GRU decoder 256 with
Bahdanau (additive) attention, dropout 0.2, Adam 2e-3, batch 64, gradient clipping at global
norm 1, teacher forcing (:class:`tensorcalc.models.seq2seq.Seq2SeqAttention`).
``--arch transformer``: a pre-norm transformer encoder–decoder on the same data.

Vocabularies: tokens seen ≥ 2 times in the training split, lowercased, punctuation split off
(:mod:`tensorcalc.data.translation`). BLEU is corpus BLEU-4 with brevity penalty by sacrebleu
with ``tokenize="none"`` on exactly those lowercased tokens (``<unk>`` stays in hypotheses).
Validation BLEU (greedy) is measured during training; at the end the test split is decoded
greedily and with beam search (k = 4, length-normalised) and the model with the best
validation BLEU is the one scored.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import functional as F
from ..data.translation import (
    BOS,
    PAD,
    WordVocab,
    book_split,
    corpus_bleu,
    pad_batch,
    tokenize,
)
from ..models.seq2seq import Seq2SeqAttention, TransformerTranslator
from ..optim import Adam
from ..optim.clip import clip_grad_norm_
from ..serialization import save_weights
from ..train.loop import Loop
from ..train.steps import Step
from . import Data, Recipe, RunResult, register
from ._common import read_finished_run, write_markdown_report


def prepare(cfg):
    """(split token lists {name: [(src tokens, tgt tokens)]}, src vocab, tgt vocab): ES→EN."""
    split = book_split()
    tok = {k: [(tokenize(es), tokenize(en)) for en, es, _ in v] for k, v in split.items()}
    if cfg.get("limit"):
        tok["train"] = tok["train"][:cfg["limit"]]
        tok["validation"] = tok["validation"][:max(cfg["limit"] // 10, 8)]
        tok["test"] = tok["test"][:max(cfg["limit"] // 10, 8)]
    sv = WordVocab.build((s for s, _ in tok["train"]), cfg["min_count"])
    tv = WordVocab.build((t for _, t in tok["train"]), cfg["min_count"])
    return tok, sv, tv


def encode_pairs(pairs, sv, tv):
    return [(sv.encode(s), tv.encode(t)) for s, t in pairs]


def make_batch(enc):
    src, lengths = pad_batch([s for s, _ in enc])
    tgt, _ = pad_batch([t for _, t in enc])
    tgt_in = np.concatenate([np.full((len(enc), 1), BOS, np.int64), tgt[:, :-1]], axis=1)
    tgt_in[tgt_in == 3] = PAD  # an <eos> shifted in is never an input (it ends the sentence)
    return src, lengths, tgt_in, tgt


def build_model(cfg, sv, tv, rng):
    if cfg["arch"] == "gru":
        return Seq2SeqAttention(len(sv), len(tv), cfg["embed"], cfg["enc_hidden"],
                                cfg["enc_layers"], cfg["dec_hidden"], cfg["dec_hidden"],
                                cfg["dropout"], rng=rng)
    return TransformerTranslator(len(sv), len(tv), cfg["d_model"], cfg["heads"], cfg["layers"],
                                 2 * cfg["d_model"], cfg["dropout"], rng=rng)


def translate_batch(model, enc, tv, beam=0, max_len=40, batch=128):
    """Token lists decoded greedily (``beam`` 0) or by beam search of width ``beam``."""
    out = []
    if beam:
        for s, _ in enc:
            out.append(tv.decode(model.beam(np.array(s), len(s), k=beam, max_len=max_len)))
        return out
    for i in range(0, len(enc), batch):
        src, lengths, _, _ = make_batch(enc[i:i + batch])
        ids, _ = model.greedy(src, lengths, max_len)
        out += [tv.decode(r) for r in ids]
    return out


class TranslationStep(Step):
    """One teacher-forced update on the next batch of a seeded permutation of the pairs."""

    def __init__(self, model, opt, data, batch_size, clip, seed):
        super().__init__()
        self.modules = {"model": model}
        self.optimizers = {"opt": opt}
        self.data, self.B, self.clip, self.seed = data, batch_size, clip, seed
        self.epoch, self.pos = 0, 0
        self._perm = None

    def _order(self):
        if self._perm is None:
            self._perm = np.random.default_rng(self.seed + self.epoch).permutation(len(self.data))
        return self._perm

    def step(self, batch):
        if self.pos + self.B > len(self.data):
            self.epoch, self.pos, self._perm = self.epoch + 1, 0, None
        idx = self._order()[self.pos:self.pos + self.B]
        self.pos += self.B
        src, lengths, tgt_in, tgt = make_batch([self.data[i] for i in idx])
        model, opt = self.modules["model"], self.optimizers["opt"]
        logits = model(src, lengths, tgt_in)
        V = logits.shape[-1]
        loss = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=PAD)
        value = self.check_finite("loss", float(loss.data))
        opt.zero_grad()
        loss.backward()
        gnorm = clip_grad_norm_(model.parameters(), self.clip) if self.clip > 0 else 0.0
        self.after_backward("model")
        opt.step()
        self.after_update("model")
        return {"loss": value, "grad_norm": float(gnorm)}

    def state_meta(self):
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_meta(self, meta):
        self.epoch, self.pos, self._perm = int(meta.get("epoch", 0)), int(meta.get("pos", 0)), None

    def evaluate(self, data):
        enc, tv = data
        hyp = translate_batch(self.modules["model"], enc, tv)
        return {"bleu": corpus_bleu(hyp, [tv.decode(t) for _, t in enc])}


SAMPLES = ("¿Dónde está el pan?", "Y dijo Dios: Sea la luz: y fué la luz.",
           "El Señor es mi pastor; nada me faltará.")


def _run(cfg, run_dir, quiet=False, progress=None):
    tok, sv, tv = prepare(cfg)
    seed = cfg["seed"]
    model = build_model(cfg, sv, tv, np.random.default_rng(seed))
    train = encode_pairs(tok["train"], sv, tv)
    val = encode_pairs(tok["validation"], sv, tv)
    test = encode_pairs(tok["test"], sv, tv)
    opt = Adam(model.parameters(), lr=cfg["lr"])
    step = TranslationStep(model, opt, train, cfg["batch_size"], cfg["clip"], seed)
    if not quiet:
        print(f"translate ({cfg['arch']}): {len(train):,} train / {len(val)} validation / "
              f"{len(test)} test pairs; vocab es {len(sv):,}, en {len(tv):,}; "
              f"{model.num_parameters():,} parameters; {cfg['steps']} steps", flush=True)
    best = {"bleu": -1.0, "state": None}

    def keep_best(_step, figs):
        if figs.get("bleu", -1.0) > best["bleu"]:
            best["bleu"] = figs["bleu"]
            best["state"] = {k: np.array(v.data if hasattr(v, "data") else v)
                             for k, v in model.state_dict().items()}

    loop = Loop(step, None, steps=cfg["steps"], val_data=(val, tv), out_dir=run_dir,
                quiet=quiet, progress=progress, config=cfg, eval_every=cfg["eval_every"] or None,
                checkpoint_every=cfg["checkpoint_every"] or None)
    loop.add_hook("on_evaluate", keep_best)
    t0 = time.perf_counter()
    history = loop.run()
    train_s = time.perf_counter() - t0
    last_val = history[-1].get("val_bleu") if history else None
    if best["state"] is not None and (last_val is None or best["bleu"] > last_val):
        model.load_state_dict(best["state"])
    save_weights(model.state_dict(), os.path.join(run_dir, "model.safetensors"))
    with open(os.path.join(run_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({"src": sv.itos, "tgt": tv.itos}, f)
    refs = [tv.decode(t) for _, t in test]
    greedy = translate_batch(model, test, tv)
    figures = {"test_bleu_greedy": corpus_bleu(greedy, refs), "best_val_bleu": best["bleu"],
               "train_seconds": train_s, "seconds_per_step": train_s / max(cfg["steps"], 1),
               "parameters": model.num_parameters(),
               "bleu": "sacrebleu corpus BLEU-4, tokenize='none' on lowercased tokens "
                       "(punctuation split off)"}
    if cfg["beam"] and cfg["arch"] == "gru":
        t1 = time.perf_counter()
        beam = translate_batch(model, test, tv, beam=cfg["beam"])
        figures[f"test_bleu_beam{cfg['beam']}"] = corpus_bleu(beam, refs)
        figures["beam_seconds"] = time.perf_counter() - t1
    samples = [{"es": s, "en": " ".join(translate_tokens(model, sv, tv, s))} for s in SAMPLES]
    for i in range(3):
        samples.append({"es": " ".join(tok["test"][i][0]), "reference": " ".join(refs[i]),
                        "en": " ".join(greedy[i])})
    with open(os.path.join(run_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump({"test": figures, "samples": samples}, f, indent=1, ensure_ascii=False)
    report = _report(run_dir, cfg, history, figures, samples, model, sv, tv)
    if not quiet:
        print(json.dumps(figures, indent=1))
        for s in samples:
            print(s)
    return RunResult(run_dir=run_dir, test=figures, report=report, history=history,
                     train_seconds=train_s, config=cfg, model=model, extra={"samples": samples})


def translate_tokens(model, sv, tv, sentence, beam=0):
    enc = [(sv.encode(tokenize(sentence)), [])]
    if beam and hasattr(model, "beam"):
        return tv.decode(model.beam(np.array(enc[0][0]), len(enc[0][0]), k=beam))
    return translate_batch(model, enc, tv)[0]


def _report(run_dir, cfg, history, figures, samples, model, sv, tv):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    s = [r["step"] for r in history]
    ax.plot(s, [r.get("train_loss", np.nan) for r in history], label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax2 = ax.twinx()
    ax2.plot(s, [r.get("val_bleu", np.nan) for r in history], "o-", color="C1",
             label="validation BLEU")
    ax2.set_ylabel("BLEU")
    fig.legend(loc="upper center", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"), dpi=110)
    plt.close(fig)
    pngs = []
    if cfg["arch"] == "gru":
        fig, axes = plt.subplots(1, 3, figsize=(15, 5))
        for ax, sent in zip(axes, SAMPLES, strict=True):
            src = tokenize(sent)
            ids = np.array([sv.encode(src)])
            out, att = model.greedy(ids, np.array([ids.shape[1]]))
            words = tv.decode(out[0])
            n = len(words) + 1
            ax.imshow(att[0, :n], cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(src) + 1), src + ["<eos>"], rotation=60, fontsize=8)
            ax.set_yticks(range(n), (words + ["<eos>"])[:n], fontsize=8)
        fig.suptitle("Bahdanau attention α_tj (rows: English output, columns: Spanish input)")
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, "attention.png"), dpi=100)
        plt.close(fig)
        pngs.append("attention.png")
    lines = [f"# translate ({cfg['arch']}) ES→EN", "",
             f"Test BLEU greedy **{figures['test_bleu_greedy']:.2f}**" +
             "".join(f", {k} **{v:.2f}**" for k, v in figures.items() if k.startswith(
                 "test_bleu_beam")) + f"; best validation BLEU {figures['best_val_bleu']:.2f}.",
             f"({figures['bleu']}.) Training {figures['train_seconds']:.0f} s.", "",
             "![curves](curves.png)", ""] + [f"![{p}]({p})" for p in pngs] + ["", "## Samples", ""]
    lines += [f"- {s['es']} → **{s['en']}**" + (f" (reference: {s['reference']})"
                                                if "reference" in s else "") for s in samples]
    return write_markdown_report(run_dir, lines)


def load_translator(run_dir):
    from ..serialization import load_into

    cfg, v, weights = read_finished_run(run_dir, "translate", "translate")
    sv, tv = WordVocab(v["src"][4:]), WordVocab(v["tgt"][4:])
    model = build_model(cfg, sv, tv, np.random.default_rng(0))
    load_into(model, weights)
    return model, sv, tv


def translate(run_dir, sentence, beam=4):
    """English for a Spanish ``sentence`` from a finished translate run (beam search k)."""
    model, sv, tv = load_translator(run_dir)
    return " ".join(translate_tokens(model, sv, tv, sentence, beam))


def _data(cfg):
    return Data(name="en-es-bible", task="multiclass", train=(np.zeros((1, 1)), np.zeros(1)),
                test=(np.zeros((1, 1)), np.zeros(1)), num_classes=2,
                title="Bible pairs ES→EN, split by books")


register(Recipe(
    name="translate",
    description="ES→EN translation: GRU encoder–decoder with Bahdanau attention (or transformer)",
    defaults={"steps": 710, "batch_size": 64, "lr": 2e-3, "optimizer": "adam", "clip": 1.0,
              "arch": "gru", "embed": 128, "enc_hidden": 128, "enc_layers": 2,
              "dec_hidden": 256, "dropout": 0.2, "d_model": 128, "heads": 4, "layers": 2,
              "min_count": 2, "eval_every": 100, "beam": 4, "limit": 0, "epochs": 1},
    data=_data, run=_run,  # its model needs the vocabularies: built inside the run
    help={"arch": "gru | transformer", "steps": "updates (batches of sentence pairs)",
          "clip": "gradient clipping: global norm (0: none)",
          "beam": "beam width for the final test decoding (0: greedy only)",
          "min_count": "vocabulary: tokens seen at least this often in train",
          "limit": "use only the first N training pairs (smoke tests; 0: all)"},
    choices={"arch": ("gru", "transformer")},
))
