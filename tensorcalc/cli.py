"""The ``tensorcalc`` command line.

    tensorcalc list                                   the recipes, one line each
    tensorcalc train RECIPE [--epochs N --lr X ...]   train; `tensorcalc train RECIPE --help`
                                                      lists that recipe's hyperparameters
    tensorcalc train RECIPE --out DIR --resume        continue a run from its last checkpoint
    tensorcalc train RECIPE --out DIR --overwrite     replace the run in DIR (only the files
                                                      tensorcalc wrote there are removed)
    tensorcalc evaluate RUN_DIR_OR_CHECKPOINT         score a saved model on the test split
    tensorcalc predict RUN_DIR --input x.npy          predictions for your own inputs
    tensorcalc predict RUN_DIR --index 0,1,2          ... or for test examples
    tensorcalc tune RECIPE --param lr=0.01,0.1 --param hidden=64,256 --folds 5
                                                      k-fold cross-validation + best on test
    tensorcalc demo                                   LeNet-5 on MNIST-10k (what `make demo` runs)
    tensorcalc explain RECIPE [--html F --latex]      the model's forward/backward math
    tensorcalc op NAME / tensorcalc ops               one primitive's math + live check / all
    tensorcalc curvature RUN_DIR [--samples N]        Hessian top eigenvalues, trace, density
    tensorcalc generate RUN_DIR --prompt "ROMEO:"     sample text from a char-lstm run
    tensorcalc translate RUN_DIR "¿Dónde está el pan?"  Spanish → English (translate run)

Every command takes --threads N (or TENSORCALC_THREADS): the BLAS threads to use [1]. One
thread is the default because on a machine shared with other work OpenBLAS's threads wait on
each other and a run can take 20x longer; on an idle machine, 2 threads gain little for these
model sizes (benchmarks/RESULTS.md).

Errors (unknown recipe, a bad flag value, bad data, a corrupt checkpoint, a run directory in
use or not writable, a full disk, a setting too large for memory) print one message and exit
with status 2; a diverged run exits 1; Ctrl-C saves a checkpoint and exits 130. A negative
number is a value, not a flag: ``--lr -1e-3`` reaches the check of --lr. Set TENSORCALC_DEBUG=1
for the traceback of an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap

__all__ = ["main"]

EXIT_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 1, 130


class CLIError(Exception):
    """A user error with a message to print."""


def _recipes():
    from . import recipes

    return recipes


# ------------------------------------------------------------------------------ helpers
def _type_for(example):
    from .train.tune import convert

    def conv(text):
        try:
            return convert(text, example)
        except ValueError:
            kind = {bool: "true/false", int: "an integer", float: "a number",
                    tuple: "integers like 256,128"}.get(type(example), "a value")
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None

    conv.__name__ = type(example).__name__
    return conv


def _show(v):
    if isinstance(v, tuple):
        return ",".join(map(str, v))
    return repr(v) if v == "" else str(v)


def _add_hyperparameters(p, recipe, defaults_none: bool = True):
    """One --flag per hyperparameter of ``recipe``, typed like its default."""
    from .recipes import COMMON_HELP, flag

    cfg = recipe.config()
    g = p.add_argument_group(f"hyperparameters of {recipe.name} (default in brackets)")
    for k, v in cfg.items():
        if k == "recipe":
            continue
        helptext = recipe.help.get(k) or COMMON_HELP.get(k, "")
        h = f"{helptext} [{_show(v)}]"
        if isinstance(v, bool):
            g.add_argument(flag(k), dest=k, action=argparse.BooleanOptionalAction,
                           default=None, help=h)
        else:
            from .recipes import OPTIMIZERS, SCHEDULES

            choices = recipe.choices.get(k) or {"optimizer": OPTIMIZERS,
                                                "schedule": SCHEDULES}.get(k)
            if choices:
                metavar = "{" + ",".join(map(str, choices)) + "}"
            else:
                metavar = {int: "N", float: "X", tuple: "N,N"}.get(type(v), "TEXT")
            g.add_argument(flag(k), dest=k, type=_type_for(v), default=None, help=h,
                           metavar=metavar)


def _given(ns, recipe) -> dict:
    cfg = recipe.config()
    return {k: getattr(ns, k) for k in cfg if k != "recipe" and getattr(ns, k, None) is not None}


def _fmt_pct(v):
    return f"{100 * v:.2f} %"


def _compact_json(obj, indent: int = 1, level: int = 0) -> str:
    """JSON with one key per line and each list of numbers on one line (a matrix: one row per
    line), so a confusion matrix reads as a matrix."""
    pad, inner = " " * (indent * level), " " * (indent * (level + 1))
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {_compact_json(v, indent, level + 1)}"
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and any(isinstance(v, (list, dict)) for v in obj):
        items = [inner + _compact_json(v, indent, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


def _print_result(res, recipe_name: str):
    t = res.test
    if "acc" in t:
        line = (f"test accuracy {_fmt_pct(t['acc'])}  (loss {t['loss']:.4f}"
                + (f", macro F1 {t['f1']:.4f}" if "f1" in t else "") + ")")
    elif "r2" in t:
        line = f"test R² {t['r2']:.4f}  (MSE {t.get('mse', t.get('loss')):.4g})"
    else:
        figs = ", ".join(f"{k} {v:.4g}" for k, v in t.items() if isinstance(v, float))
        line = f"test {figs}" if figs else ""  # a study's figures are its own tables
    if line:
        print(line)
    if res.history:
        last = res.history[-1]
        if "epoch" in last:
            n, unit = len(res.history), "epoch"
        else:  # a run counted in steps (a language model, DQN): rows are periods, not epochs
            n, unit = int(last.get("step", 0)), "step"
        print(f"training time {res.train_seconds:.1f} s for {n:,} {unit}{'' if n == 1 else 's'}")
    if res.report:
        print(f"report: {res.report}")


# ------------------------------------------------------------------------------ commands
def cmd_list(argv):
    p = argparse.ArgumentParser(prog="tensorcalc list", description="Show the recipes.")
    p.parse_args(argv)
    rs = _recipes().list_recipes()
    width = max(len(r.name) for r in rs)
    print("recipes (tensorcalc train NAME; tensorcalc train NAME --help for its settings):")
    for r in rs:
        print(f"  {r.name.ljust(width)}  {r.description}")
    return 0


def _recipe_arg(argv, command):
    if not argv or argv[0].startswith("-"):
        if any(a in ("-h", "--help") for a in argv):
            names = ", ".join(r.name for r in _recipes().list_recipes())
            print(f"usage: tensorcalc {command} RECIPE [options]\n\nrecipes: {names}\n"
                  f"`tensorcalc {command} RECIPE --help` lists a recipe's options.")
            raise SystemExit(0)
        names = ", ".join(r.name for r in _recipes().list_recipes())
        raise CLIError(f"{command}: which recipe? Available recipes: {names}")
    return _recipes().get_recipe(argv[0]), argv[1:]


def cmd_train(argv):
    recipe, rest = _recipe_arg(argv, "train")
    p = argparse.ArgumentParser(
        prog=f"tensorcalc train {recipe.name}",
        description=f"Train {recipe.name}: {recipe.description}.")
    p.add_argument("--out", help=f"run directory [runs/{recipe.name}]")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint (give --epochs to "
                        "train longer)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run in --out: the files tensorcalc wrote there are removed "
                        "(listed in its run.json), nothing else")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result")
    p.add_argument("--no-report", action="store_true", help="skip report.html and its figures")
    _add_hyperparameters(p, recipe)
    ns = p.parse_args(rest)
    if ns.resume and ns.overwrite:
        raise CLIError("--resume continues the run in --out and --overwrite replaces it; give "
                       "one")
    res = _recipes().train_recipe(recipe.name, _given(ns, recipe), ns.out, resume=ns.resume,
                                  quiet=ns.quiet, report=not ns.no_report,
                                  overwrite=ns.overwrite)
    _print_result(res, recipe.name)
    return 0


DEMO_RECIPE, DEMO_TARGET = "lenet", 0.98
DEMO_OUT = os.path.join("runs", "demo")


def cmd_demo(argv):
    p = argparse.ArgumentParser(
        prog="tensorcalc demo",
        description="Train LeNet-5 (the lenet recipe: two 5×5 convolutions with max pooling, "
                    "then fc 120-84-10) on the MNIST-10k digits shipped with tensorcalc, print "
                    f"the test accuracy on the 2,000 held-out images (target ≥ "
                    f"{100 * DEMO_TARGET:.0f} %) and the path of the report (learning curves, "
                    "learned filters, feature maps, confusion matrix, mistakes). "
                    "`tensorcalc train lenet --help` lists the settings; `tensorcalc train mlp` "
                    "trains the multilayer perceptron.",
        epilog="Exit status 0 when the target is met, 1 when not.")
    p.add_argument("--out", default=None,
                   help="run directory [runs/demo: the demo's own, each demo replaces the "
                        "previous demo run there]")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run in --out (only the files tensorcalc wrote there)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the result")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the recipe's number of epochs (for a quicker look)")
    ns = p.parse_args(argv)
    if ns.epochs is not None and ns.epochs < 1:
        raise CLIError(f"--epochs must be >= 1, got {ns.epochs}")
    print("tensorcalc demo: a convolutional network (LeNet-5) learns handwritten digits, from "
          "scratch, on NumPy.")
    over = {} if ns.epochs is None else {"epochs": ns.epochs}
    # runs/demo belongs to the demo: `make demo` twice replaces the first demo run (only the
    # files it wrote); any other --out is protected like `tensorcalc train`'s
    own = ns.out is None
    res = _recipes().train_recipe(DEMO_RECIPE, over, DEMO_OUT if own else ns.out,
                                  quiet=ns.quiet, overwrite=own or ns.overwrite)
    _print_result(res, DEMO_RECIPE)
    acc = res.test["acc"]
    verdict = "met" if acc >= DEMO_TARGET else "NOT met"
    print(f"target: >= {100 * DEMO_TARGET:.0f} % test accuracy on the 2,000 held-out images — "
          f"{verdict}")
    if res.report:
        print(f"open the report: {os.path.abspath(res.report)}")
    return 0 if acc >= DEMO_TARGET else EXIT_DIVERGED


def cmd_evaluate(argv):
    p = argparse.ArgumentParser(
        prog="tensorcalc evaluate",
        description="Score a saved model on its recipe's test split.")
    p.add_argument("path", help="a run directory (runs/NAME) or a checkpoint directory")
    p.add_argument("--best", action="store_true",
                   help="use checkpoints/best (best validation epoch) instead of last")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--episodes", type=int, default=None,
                   help="reinforcement-learning runs (dqn): greedy episodes to play [the run's "
                        "eval_episodes]")
    ns = p.parse_args(argv)
    from .recipes import evaluate_run

    if ns.episodes is not None and ns.episodes < 1:
        raise CLIError(f"--episodes must be >= 1, got {ns.episodes}")
    res = evaluate_run(ns.path, "best" if ns.best else "last",
                       **({"episodes": ns.episodes} if ns.episodes else {}))
    if ns.json:
        out = {"checkpoint": str(res["checkpoint"]), "recipe": res["recipe"],
               "n": res["n"], "test": res["test"]}
        if "confusion" in res:
            out["confusion"] = res["confusion"].tolist()
        print(_compact_json(out))
        return 0
    if res.get("episodes"):  # a policy scored by playing episodes
        print(f"{res['recipe']} from {res['checkpoint']}: {res['data']}, {res['n']:,} greedy "
              "episodes")
    else:
        print(f"{res['recipe']} from {res['checkpoint']}: {res['data']} test split, "
              f"{res['n']:,} examples")
    for k, v in res["test"].items():
        print(f"  {k:<10} {v:.4f}" + (f"   ({_fmt_pct(v)})" if k == "acc" else ""))
    if "per_class" in res:
        names = res["run"].data.class_names or list(range(len(res["confusion"])))
        pc = res["per_class"]
        w = max(5, max(len(str(n)) for n in names))
        print(f"\n  {'class'.ljust(w)}  precision  recall     F1  support")
        for i, n in enumerate(names):
            print(f"  {str(n).ljust(w)}  {pc['precision'][i]:9.4f}  {pc['recall'][i]:6.4f}  "
                  f"{pc['f1'][i]:.4f}  {pc['support'][i]:7d}")
        m = res["confusion"]
        print("\n  confusion matrix (rows: true, columns: predicted)")
        cw = max(3, len(str(int(m.max()))))
        print("  " + " " * (w + 1) + " ".join(str(j).rjust(cw) for j in range(len(m))))
        for i, row in enumerate(m):
            print(f"  {str(i).rjust(w)} " + " ".join(str(int(c)).rjust(cw) for c in row))
    return 0


def cmd_predict(argv):
    import numpy as np

    p = argparse.ArgumentParser(
        prog="tensorcalc predict",
        description="Predictions of a trained model, for inputs in a .npy file or for test "
                    "examples by index.")
    p.add_argument("run", help="a run directory (runs/NAME) or a checkpoint directory")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", help=".npy file of raw inputs (e.g. (N, 28, 28) images, "
                                     "bytes or floats in [0, 1])")
    src.add_argument("--index", help="comma-separated indices into the test split [0]")
    p.add_argument("--top", type=int, default=3, help="classes to show per example [3]")
    p.add_argument("--output", help="also save the raw model outputs to this .npy file")
    ns = p.parse_args(argv)
    from .recipes import predict_run

    inputs, index = None, None
    if ns.input:
        if not os.path.isfile(ns.input):
            raise CLIError(f"--input: no such file {ns.input}")
        try:
            inputs = np.load(ns.input, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise CLIError(f"--input: cannot read {ns.input} as a .npy array ({e})") from None
        if not isinstance(inputs, np.ndarray):  # an .npz archive
            raise CLIError(f"--input: {ns.input} is an .npz archive; save one array with "
                           "numpy.save")
        from .data import check_numeric

        check_numeric(inputs, f"--input {ns.input}")
    else:
        try:
            index = [int(s) for s in (ns.index or "0").split(",") if s.strip()]
        except ValueError:
            raise CLIError(f"--index: expected integers like 0,5,9, got {ns.index!r}") from None
    if ns.top < 1:
        raise CLIError(f"--top must be >= 1, got {ns.top}")
    res = predict_run(ns.run, inputs=inputs, index=index)
    names = res["class_names"]
    rows = len(res["outputs"])
    for i in range(rows):
        who = f"test[{index[i]}]" if index is not None else f"input[{i}]"
        if "labels" in res:
            pr = res["probs"][i]
            order = np.argsort(-pr)[:ns.top]
            best = ", ".join(f"{names[c] if names else c} {100 * pr[c]:.1f} %" for c in order)
            truth = ""
            if res["truth"] is not None:
                t = int(res["truth"][i])
                ok = "✓" if t == int(res["labels"][i]) else "✗"
                truth = f"   (true {names[t] if names else t} {ok})"
            lab = int(res["labels"][i])
            print(f"{who}: {names[lab] if names else lab}   [{best}]{truth}")
        else:
            vals = ", ".join(f"{v:.4g}" for v in res["values"][i])
            truth = "" if res["truth"] is None else f"   (true {float(res['truth'][i]):.4g})"
            print(f"{who}: {vals}{truth}")
    if ns.output:
        np.save(ns.output, res["outputs"])
        print(f"outputs saved to {ns.output}")
    return 0


def cmd_tune(argv):
    recipe, rest = _recipe_arg(argv, "tune")
    p = argparse.ArgumentParser(
        prog=f"tensorcalc tune {recipe.name}",
        description="k-fold cross-validation over hyperparameter settings; the best setting is "
                    "retrained on all training data and scored once on the test split.",
        epilog="Example: tensorcalc tune mlp --param lr=0.001,0.003 --param hidden=64,256 "
               "--folds 3 --epochs 3. Values of a tuple hyperparameter use x inside one value: "
               "--param hidden=256x128,512x256.")
    p.add_argument("--param", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a hyperparameter and the values to try (repeat for more)")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold cross-validation [5]")
    p.add_argument("--search", choices=("grid", "random"), default="grid",
                   help="all combinations, or --trials random ones [grid]")
    p.add_argument("--trials", type=int, help="settings to try with --search random")
    p.add_argument("--out", help=f"output directory [runs/tune-{recipe.name}]")
    p.add_argument("--quiet", action="store_true")
    _add_hyperparameters(p, recipe)
    ns = p.parse_args(rest)
    from .recipes import flag, tune_recipe
    from .train.tune import format_setting, parse_values

    cfg = recipe.config()
    grid = {}
    for spec in ns.param:
        if "=" not in spec:
            raise CLIError(f"--param expects NAME=V1,V2,..., got {spec!r}")
        name, values = spec.split("=", 1)
        key = name.strip().lstrip("-").replace("-", "_")
        if key not in cfg or key == "recipe":
            raise CLIError(f"--param {name}: {recipe.name} has no hyperparameter {key!r}; it "
                           f"has {', '.join(k for k in cfg if k != 'recipe')}")
        try:
            grid[key] = parse_values(values, cfg[key])
        except ValueError as e:
            raise CLIError(f"--param {name}: {e}") from None
    if not grid:
        raise CLIError("tune: give at least one --param NAME=V1,V2,...")
    base = _given(ns, recipe)
    for k in grid:
        if k in base:
            raise CLIError(f"{flag(k)} and --param {k}=... both given; drop one")
    out = ns.out or os.path.join("runs", f"tune-{recipe.name}")
    n_set = 1
    for v in grid.values():
        n_set *= len(v)
    if not ns.quiet:
        n_try = min(ns.trials or n_set, n_set) if ns.search == "random" else n_set
        print(f"tune {recipe.name}: {n_try} settings × {ns.folds} folds = {n_try * ns.folds} "
              f"training runs, then the best retrained on all training data", flush=True)
    res = tune_recipe(recipe.name, grid, base, folds=ns.folds, search=ns.search,
                      trials=ns.trials, out_dir=out, quiet=ns.quiet)
    print()
    print(res.table())
    print(f"\nbest: {format_setting(res.best)}  (cv {res.score_key} "
          f"{res.rows[res.best_index]['mean']:.4f})")
    final = res.final
    if final is not None:
        t = final.test
        if "acc" in t:
            print(f"best setting retrained on all training data: test accuracy "
                  f"{_fmt_pct(t['acc'])} (loss {t['loss']:.4f})")
        else:
            print(f"best setting retrained on all training data: test loss {t['loss']:.4g}"
                  + (f", R² {t['r2']:.4f}" if "r2" in t else ""))
    print(f"results: {res.files.get('csv')}  plot: {res.files.get('png')}"
          + (f"  report: {final.report}" if final is not None and final.report else ""))
    return 0


COMMANDS = {"list": cmd_list, "train": cmd_train, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "tune": cmd_tune, "demo": cmd_demo}


def _explain_command(name):
    def run(argv):
        from .diagnostics import explain_cli
        return getattr(explain_cli, f"cmd_{name}")(argv)
    return run


COMMANDS.update({k: _explain_command(k) for k in ("explain", "op", "ops")})


def cmd_curvature(argv):
    """tensorcalc curvature RUN: the Hessian spectrum of a trained run's training loss."""
    p = argparse.ArgumentParser(prog="tensorcalc curvature",
                                description="Top Hessian eigenvalues (Lanczos, power "
                                "iteration), trace (Hutch++) and spectral density (stochastic "
                                "Lanczos quadrature) of a trained run's loss; writes "
                                "curvature.png/.json/.html into the run directory.")
    p.add_argument("path", help="run directory or checkpoint")
    p.add_argument("--samples", type=int, default=512, help="training examples used [512]")
    p.add_argument("--top", type=int, default=5, help="top eigenvalues to report [5]")
    p.add_argument("--probes", type=int, default=10, help="SLQ probe vectors [10]")
    p.add_argument("--steps", type=int, default=60, help="Lanczos steps per probe [60]")
    p.add_argument("--trace-samples", type=int, default=300,
                   help="Hessian-vector products for the Hutch++ trace [300]")
    p.add_argument("--deflate", type=int, default=50,
                   help="dominant directions resolved exactly in the density [50]")
    p.add_argument("--best", action="store_true", help="use checkpoints/best")
    p.add_argument("--out", default=None, help="directory for the outputs [the run's]")
    ns = p.parse_args(argv)
    for k in ("samples", "top", "probes", "steps", "trace_samples"):
        if getattr(ns, k) < 1:
            raise CLIError(f"--{k.replace('_', '-')} must be >= 1, got {getattr(ns, k)}")
    if ns.deflate < 0:
        raise CLIError(f"--deflate must be >= 0, got {ns.deflate}")
    from .train.curvature_run import run_curvature

    run_curvature(ns.path, samples=ns.samples, top=ns.top, probes=ns.probes, steps=ns.steps,
                  trace_samples=ns.trace_samples, deflate=ns.deflate,
                  which="best" if ns.best else "last", out=ns.out)
    return 0


COMMANDS["curvature"] = cmd_curvature


def cmd_generate(argv):
    """tensorcalc generate RUN: sample text from a trained char-lstm run."""
    p = argparse.ArgumentParser(prog="tensorcalc generate",
                                description="Sample text from a trained char-lstm run "
                                "(deterministic for a seed).")
    p.add_argument("path", help="run directory of a char-lstm run")
    p.add_argument("--prompt", default="ROMEO:", help="text to start from [ROMEO:]")
    p.add_argument("--length", type=int, default=500, help="characters to generate [500]")
    p.add_argument("--temperature", type=float, default=0.8, help="softmax temperature [0.8]")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely")
    p.add_argument("--seed", type=int, default=0, help="random seed [0]")
    ns = p.parse_args(argv)
    from .recipes.char_transformer import generate_any as generate  # char-lstm or transformer

    print(generate(ns.path, ns.prompt.replace("\\n", "\n"), ns.length, ns.temperature,
                   ns.top_k, ns.seed))
    return 0


COMMANDS["generate"] = cmd_generate


def cmd_translate(argv):
    """tensorcalc translate RUN "¿Dónde está el pan?": English from a translate run."""
    p = argparse.ArgumentParser(prog="tensorcalc translate",
                                description="Translate Spanish sentences with a trained "
                                "translate run (beam search).")
    p.add_argument("path", help="run directory of a translate run")
    p.add_argument("sentence", nargs="+", help="Spanish sentence(s)")
    p.add_argument("--beam", type=int, default=4, help="beam width (0: greedy) [4]")
    ns = p.parse_args(argv)
    from .recipes.translate import translate

    for s in ns.sentence:
        print(translate(ns.path, s, ns.beam))
    return 0


COMMANDS["translate"] = cmd_translate


def _usage() -> str:
    return textwrap.dedent(__doc__.split("\n\n")[1]).rstrip()


def _pop_threads(argv: list) -> int:
    """Remove ``--threads N`` / ``--threads=N`` from argv; the value (default: env or 1)."""
    value = os.environ.get("TENSORCALC_THREADS", "1")
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            break
        if a.startswith("--threads="):
            value = a.split("=", 1)[1]
            del argv[i]
            break
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise CLIError(f"--threads must be a positive integer, got {value!r}")
    return n


_NEGATIVE_VALUE = re.compile(r"-(\d|\.\d|inf\b|nan\b)", re.IGNORECASE)


def _join_negative_values(argv: list) -> list:
    """``--lr -1e-3`` -> ``--lr=-1e-3``. argparse takes a token that starts with '-' for an
    option unless it looks like -N or -N.N, so "-1e-3", "-5,10" or "-inf" after a flag would be
    "expected one argument" instead of reaching the flag's check. No option of ours starts with
    a digit, so such a token is always a value."""
    out = []
    for a in argv:
        prev = out[-1] if out else ""
        if (_NEGATIVE_VALUE.match(a) and prev.startswith("--") and "=" not in prev
                and len(prev) > 2):
            out[-1] = f"{prev}={a}"
        else:
            out.append(a)
    return out


def _set_device(argv: list) -> None:
    """Remove ``--device NAME`` / ``--device=NAME`` from argv (default: TENSORCALC_DEVICE or
    cpu) and make it the training device: the Loop moves the model, the optimiser state and
    the batches there ('cuda' needs CuPy and a GPU; 'standin' is the tests' CPU stand-in)."""
    value = os.environ.get("TENSORCALC_DEVICE") or "cpu"
    for i, a in enumerate(list(argv)):
        if a == "--device" and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i:i + 2]
            break
        if a.startswith("--device="):
            value = a.split("=", 1)[1]
            del argv[i]
            break
    from .backend import set_default_device

    try:
        set_default_device(value)
    except (ValueError, RuntimeError) as e:
        raise CLIError(f"--device: {e}") from None


def _one_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split())


def main(argv=None) -> int:
    """Entry point of the ``tensorcalc`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .distributed.launch import LaunchError, relaunch
    try:  # --procs N: run this command as N MPI processes (tensorcalc.distributed)
        rc = relaunch(argv)
    except LaunchError as e:
        print(f"tensorcalc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if rc is not None:
        return rc
    try:
        threads = _pop_threads(argv)
    except CLIError as e:
        print(f"tensorcalc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    from .backend import set_num_threads

    set_num_threads(threads)
    try:
        _set_device(argv)
    except CLIError as e:
        print(f"tensorcalc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if not argv or argv[0] in ("-h", "--help", "help"):
        print("usage: tensorcalc COMMAND ...\n\n" + _usage())
        return 0 if argv else EXIT_ERROR
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"tensorcalc {__version__}")
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        print(f"tensorcalc: error: unknown command {argv[0]!r}; commands: "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return EXIT_ERROR
    from safetensors import SafetensorError

    from .recipes import RecipeError
    from .serialization import CheckpointError
    from .train import TrainingDiverged, TrainingInterrupted
    from .train.rundir import describe_os_error

    try:
        return cmd(_join_negative_values(argv[1:]))
    except TrainingInterrupted as e:
        print(f"\ntensorcalc: {e}", file=sys.stderr)
        run_dir = os.path.dirname(os.path.dirname(e.checkpoint)) if e.checkpoint else None
        if argv[0] in ("train", "demo") and run_dir:
            recipe = argv[1] if argv[0] == "train" and len(argv) > 1 else DEMO_RECIPE
            print(f"resume with: tensorcalc train {recipe} --out {run_dir} --resume",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\ntensorcalc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `tensorcalc evaluate RUN | head`: the reader left, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except TrainingDiverged as e:
        advice = ""
        if e.lr is not None:  # the library says "learning rate"; the CLI names its flags
            advice = f" From the command line: try a smaller --lr (this run used {e.lr:g})."
        print(f"tensorcalc: error: {e}{advice}", file=sys.stderr)
        return EXIT_DIVERGED
    except (CLIError, RecipeError, CheckpointError, ValueError) as e:  # RunDirError, DataError
        if os.environ.get("TENSORCALC_DEBUG"):
            raise
        print(f"tensorcalc: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as e:  # numpy's ArrayMemoryError too: "Unable to allocate 292 GiB ..."
        if os.environ.get("TENSORCALC_DEBUG"):
            raise
        detail = _one_line(e) if str(e).strip() else "an allocation failed"
        print(f"tensorcalc: error: not enough memory: {detail}; choose smaller settings "
              "(e.g. --hidden, --batch-size)", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a full disk, a directory that cannot be written, a missing file
        if os.environ.get("TENSORCALC_DEBUG"):
            raise
        print(f"tensorcalc: error: {describe_os_error(e)}", file=sys.stderr)
        return EXIT_ERROR
    except SafetensorError as e:  # safetensors' own I/O error (not an OSError): a full disk
        if os.environ.get("TENSORCALC_DEBUG"):  # while a checkpoint's tensors were written
            raise
        text = _one_line(e)
        if "os error 28" in text:
            text = "no space left on the device while writing a checkpoint"
        print(f"tensorcalc: error: {text}; the previous checkpoint is kept", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
