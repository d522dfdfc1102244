"""dqn — deep Q-learning on CartPole-v1 (``--env Acrobot-v1`` or ``MountainCar-v0``).

A Q-network Q_θ(s, ·) (MLP 256-256, ReLU; ``--dueling`` for a value + advantage head) is fitted
to the Bellman optimality target y = r + γ(1 − d) max_a′ Q_θ⁻(s′, a′) (``--double``: the
online net picks a′) on minibatches replayed from the last ``buffer_size`` transitions, with a
Huber loss, Adam and gradient clipping; θ⁻ is a copy of θ refreshed every ``target_update``
environment steps (``--tau`` < 1: Polyak averaging). Exploration is ε-greedy, ε falling
linearly from 1 to ``final_eps`` over ``exploration_fraction`` of the run.

The defaults are rl-baselines3-zoo's for CartPole-v1 (50,000 environment steps; train every 256
steps with 128 gradient steps; target copied every 10 steps). With ``--env Acrobot-v1`` or
``--env MountainCar-v0``, every setting left at its CartPole default takes the zoo's value for
that environment. Every ``eval_every`` steps the greedy policy (ε = 0) plays
``eval_episodes`` episodes on fresh, seeded copies of the environment: that mean ± std is
the result, reported apart from the ε-greedy training-episode returns. ``--seeds 3`` trains
three seeds (run directories ``seed0``, ``seed1``, ...) and reports the per-seed table.
``--resume`` continues an interrupted run (Ctrl-C, SIGTERM, a crash) from each seed's last
checkpoint — replay buffer and environment included, so it ends bit-identical.
``tensorcalc evaluate RUN --episodes 100`` re-scores a saved policy.
"""

from __future__ import annotations

import csv
import os

import numpy as np

from ..models.dqn import QNetwork
from ..train import Loop
from ..train import report as R
from ..train.pipeline import make_optimizer, seed_streams, write_json
from . import Recipe, RecipeError, RunResult, register
from ._rl import env_data, make, plot_lines, render_episode

ENVS = ("CartPole-v1", "Acrobot-v1", "MountainCar-v0")

#: rl-baselines3-zoo's DQN hyperparameters (hyperparams/dqn.yml) for the other environments
ENV_DEFAULTS = {
    "Acrobot-v1": {"steps": 100_000, "lr": 6.3e-4, "batch_size": 128, "buffer_size": 50_000,
                   "learning_starts": 0, "target_update": 250, "train_freq": 4,
                   "gradient_steps": 4, "exploration_fraction": 0.12, "final_eps": 0.1},
    "MountainCar-v0": {"steps": 120_000, "lr": 4e-3, "batch_size": 128, "buffer_size": 10_000,
                       "learning_starts": 1000, "gamma": 0.98, "target_update": 600,
                       "train_freq": 16, "gradient_steps": 8, "exploration_fraction": 0.2,
                       "final_eps": 0.07},
}
#: the return at which an environment counts as solved (CartPole-v1: the 500-step maximum)
SOLVED = {"CartPole-v1": 500.0, "Acrobot-v1": -100.0, "MountainCar-v0": -110.0}

DEFAULTS = {"env": "CartPole-v1", "steps": 50_000, "lr": 2.3e-3, "batch_size": 64,
            "buffer_size": 100_000, "learning_starts": 1000, "target_update": 10, "tau": 1.0,
            "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
            "final_eps": 0.04, "gamma": 0.99, "hidden": (256, 256), "loss": "huber",
            "max_grad_norm": 10.0, "double": False, "dueling": False, "eval_every": 2500,
            "eval_episodes": 10, "seeds": 1, "val_fraction": 0.0, "optimizer": "adam",
            "epochs": 1}


def resolve(cfg: dict, given=frozenset()) -> dict:
    """``cfg`` with the environment's defaults for every setting not in ``given`` (the keys
    the user set), then checked."""
    cfg = dict(cfg)
    for k, v in ENV_DEFAULTS.get(cfg["env"], {}).items():
        if k not in given:
            cfg[k] = v
    for k in ("steps", "buffer_size", "train_freq", "gradient_steps", "target_update",
              "eval_every", "eval_episodes", "seeds", "batch_size"):
        if not isinstance(cfg[k], int) or cfg[k] < 1:
            raise RecipeError(f"--{k.replace('_', '-')} must be an integer >= 1, got "
                              f"{cfg[k]!r}")
    if cfg.get("schedule", "none") != "none":
        raise RecipeError("--schedule: dqn trains at a constant learning rate (--lr); "
                          "exploration follows --exploration-fraction and --final-eps")
    if not 0 < cfg["tau"] <= 1:
        raise RecipeError(f"--tau must be in (0, 1], got {cfg['tau']!r}")
    if not 0 <= cfg["final_eps"] <= 1 or not 0 <= cfg["exploration_fraction"] <= 1:
        raise RecipeError("--final-eps and --exploration-fraction must be in [0, 1]")
    return cfg


def build_step(cfg: dict, seed: int):
    """The :class:`~tensorcalc.rl.dqn.DQNStep` of one seed (networks from the seed's init
    stream; exploration, replay and the environment from the seed itself)."""
    from ..rl.dqn import DQNStep

    env_id = cfg["env"]

    def make_env(**kw):
        return make(env_id, **kw)

    probe = make_env()
    obs_dim, n_actions = int(np.prod(probe.observation_space.shape)), int(probe.action_space.n)
    probe.close()
    init = seed_streams(seed)["init"]
    q = QNetwork(obs_dim, n_actions, cfg["hidden"], dueling=cfg["dueling"], rng=init)
    qt = QNetwork(obs_dim, n_actions, cfg["hidden"], dueling=cfg["dueling"], rng=init)
    opt = make_optimizer(cfg, q.parameters())
    step = DQNStep(make_env, q, qt, opt, total_steps=cfg["steps"],
                   buffer_size=cfg["buffer_size"], batch_size=cfg["batch_size"],
                   gamma=cfg["gamma"], learning_starts=cfg["learning_starts"],
                   train_freq=cfg["train_freq"], gradient_steps=cfg["gradient_steps"],
                   target_update=cfg["target_update"], tau=cfg["tau"],
                   exploration_fraction=cfg["exploration_fraction"],
                   final_eps=cfg["final_eps"], loss=cfg["loss"],
                   max_grad_norm=cfg["max_grad_norm"] or None, double=cfg["double"],
                   seed=seed)
    return step, make_env


def _data(cfg):
    return env_data([cfg["env"]])(cfg)


def _model(cfg, data, rng):  # the Q-network, for tools that ask a recipe for its model
    probe = make(cfg["env"])
    return QNetwork(int(np.prod(probe.observation_space.shape)), int(probe.action_space.n),
                    cfg["hidden"], dueling=cfg["dueling"], rng=rng)


EVAL_SEED = 10_000


def train_seed(cfg, seed: int, out_dir: str, quiet=True, progress=None,
               resume: bool = False) -> dict:
    """Train one seed into ``out_dir`` (continuing its ``checkpoints/last`` with ``resume``
    when there is one); returns its figures."""
    from ..rl.dqn import EvalEpisodes

    step, make_env = build_step(cfg, seed)
    loop = Loop(step, steps=cfg["steps"], eval_every=cfg["eval_every"],
                val_data=EvalEpisodes(cfg["eval_episodes"], EVAL_SEED), out_dir=out_dir,
                checkpoint_every=cfg.get("checkpoint_every") or None, monitor="val_return",
                quiet=quiet, progress=progress, config=dict(cfg, seed=seed))
    ck = os.path.join(out_dir, "checkpoints", "last")
    hist = loop.run(resume_from=ck if resume and os.path.isdir(ck) else None)
    seconds = loop.train_seconds
    episodes = step.episode_table()
    with open(os.path.join(out_dir, "episodes.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_step", "return", "length"])
        w.writerows([[int(a), b, int(c)] for a, b, c in episodes])
    solved = SOLVED.get(cfg["env"])
    evals = [(r["step"], r["val_return"], r["val_return_std"]) for r in hist]
    first = next((s for s, v, _ in evals if solved is not None and v >= solved), None)
    last = hist[-1]
    res = {"seed": seed, "final_return": last["val_return"],
           "final_return_std": last["val_return_std"], "final_return_min": last["val_return_min"],
           "best_return": max(v for _, v, _ in evals),
           "best_step": max(evals, key=lambda e: e[1])[0], "first_solved_step": first,
           "solved": solved is not None and last["val_return"] >= solved,
           "train_seconds": seconds, "env_steps": step.t, "updates": step.updates,
           "training_episodes": len(episodes), "evals": evals, "episodes": episodes,
           "history": hist, "step": step, "make_env": make_env}
    write_json(os.path.join(out_dir, "metrics.json"),
               {k: v for k, v in res.items() if k not in ("episodes", "history", "step",
                                                           "make_env")})
    return res


def _run(cfg, run_dir, quiet=False, progress=None, resume=False):
    from ..rl.dqn import greedy_actions, moving_average

    seeds = [cfg["seed"] + i for i in range(cfg["seeds"])]
    results = []
    for s in seeds:
        out = run_dir if len(seeds) == 1 else os.path.join(run_dir, f"seed{s}")
        if not quiet:
            print(f"dqn on {cfg['env']}, seed {s}: {cfg['steps']:,} environment steps "
                  f"(train every {cfg['train_freq']} with {cfg['gradient_steps']} gradient "
                  f"steps, batch {cfg['batch_size']}, lr {cfg['lr']:g})", flush=True)
        r = train_seed(cfg, s, out, quiet=quiet, progress=progress, resume=resume)
        results.append(r)
        if not quiet:
            print(f"  seed {s}: greedy return {r['final_return']:.1f} ± "
                  f"{r['final_return_std']:.1f} over {cfg['eval_episodes']} episodes "
                  f"(best {r['best_return']:.1f} at step {r['best_step']:,}); "
                  f"{r['train_seconds']:.1f} s", flush=True)
    solved = SOLVED.get(cfg["env"])
    finals = np.array([r["final_return"] for r in results])
    test = {"return": float(finals.mean()), "return_std_seeds": float(finals.std()),
            "best_return": float(np.mean([r["best_return"] for r in results])),
            "seeds_solved": float(sum(r["solved"] for r in results)),
            "seconds_per_seed": float(np.mean([r["train_seconds"] for r in results]))}
    rows = [[r["seed"], f"{r['final_return']:.1f} ± {r['final_return_std']:.1f}",
             r["final_return_min"], f"{r['best_return']:.1f} @ {r['best_step']:,}",
             "—" if r["first_solved_step"] is None else f"{r['first_solved_step']:,}",
             r["training_episodes"], r["updates"], f"{r['train_seconds']:.1f}"]
            for r in results]
    header = ["seed", f"greedy return ({cfg['eval_episodes']} ep.)", "min", "best eval",
              f"first eval ≥ {solved:g}" if solved is not None else "first solved",
              "training episodes", "gradient steps", "seconds"]
    if not quiet:
        print("  ".join(header))
        for row in rows:
            print("  ".join(str(c) for c in row))
    # ---- report
    figs = []
    series = [(f"seed {r['seed']}", [e[0] for e in r["evals"]], [e[1] for e in r["evals"]])
              for r in results]
    band = {f"seed {r['seed']}": ([e[1] - e[2] for e in r["evals"]],
                                  [e[1] + e[2] for e in r["evals"]]) for r in results}
    figs.append((plot_lines(series, os.path.join(run_dir, "eval_return.png"),
                            "environment step", "greedy return (mean ± std)",
                            f"greedy evaluation, {cfg['eval_episodes']} episodes",
                            hline=solved, band=band),
                 "Greedy-policy return (ε = 0) every "
                 f"{cfg['eval_every']:,} steps, mean ± std over {cfg['eval_episodes']} seeded "
                 "episodes."))
    tr = [(f"seed {r['seed']}", r["episodes"][:, 0], moving_average(r["episodes"][:, 1], 20))
          for r in results if len(r["episodes"])]
    figs.append((plot_lines(tr, os.path.join(run_dir, "train_return.png"), "environment step",
                            "training-episode return (moving mean of 20)",
                            "ε-greedy training episodes", hline=solved),
                 "Returns of the ε-greedy training episodes (what the agent experienced while "
                 "exploring), a trailing mean of 20 episodes."))
    loss = [(f"seed {r['seed']}", [h["step"] for h in r["history"]],
             [h["train_loss"] for h in r["history"]]) for r in results]
    figs.append((plot_lines(loss, os.path.join(run_dir, "loss.png"), "environment step",
                            "TD loss (mean per period)", "temporal-difference loss"),
                 "Mean Huber TD loss of the gradient steps of each period."))
    best = results[int(np.argmax(finals))]
    q = best["step"].q_net
    q.eval()
    figs.append(render_episode(best["make_env"],
                               lambda o: int(greedy_actions(q, np.asarray(o)[None])[0]),
                               os.path.join(run_dir, "episode.png"), seed=EVAL_SEED))
    rep = R.HTMLReport(f"dqn on {cfg['env']}",
                       f"{len(seeds)} seed(s) × {cfg['steps']:,} environment steps")
    rep.cards([("greedy return (final, mean of seeds)", f"{test['return']:.1f}"),
               ("seeds solved" if solved is not None else "seeds",
                f"{int(test['seeds_solved'])} / {len(seeds)}"),
               ("seconds per seed", f"{test['seconds_per_seed']:.1f}")])
    rep.section("Per seed")
    rep.table(rows, header)
    rep.section("Learning curves")
    for png, cap in figs:
        rep.figure(png, cap)
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    write_json(os.path.join(run_dir, "metrics.json" if len(seeds) > 1 else "summary.json"),
               {"test": test, "seeds": [{k: v for k, v in r.items()
                                         if k not in ("episodes", "history", "step",
                                                      "make_env")} for r in results]})
    return RunResult(run_dir=run_dir, test=test, report=report, history=results[0]["history"],
                     train_seconds=float(sum(r["train_seconds"] for r in results)), config=cfg,
                     extra={"seeds": results})


def evaluate_checkpoint(ck: str, cfg: dict, episodes: int | None = None) -> dict:
    """Greedy returns of a saved Q-network over ``episodes`` (default the run's
    ``eval_episodes``) seeded episodes (seeds 20,000 + i: not the ones training evaluated)."""
    from .. import serialization as S
    from ..rl.dqn import evaluate_policy

    cfg = dict(DEFAULTS, **cfg)  # the run's own (resolved) settings
    q = _model(cfg, None, 0)
    S.load_state(ck, modules={"q_net": q}, strict=False)
    n = int(episodes or cfg["eval_episodes"])
    res = evaluate_policy(q, lambda: make(cfg["env"]), n, seed=20_000)
    r = res["returns"]
    return {"checkpoint": ck, "recipe": "dqn", "data": cfg["env"], "n": n, "episodes": True,
            "test": {"return": float(r.mean()), "return_std": float(r.std()),
                     "return_min": float(r.min()), "return_max": float(r.max()),
                     "length": float(res["lengths"].mean())}}


register(Recipe(
    name="dqn",
    description="deep Q-network (replay, target network, ε-greedy; Double/Dueling options)",
    defaults=DEFAULTS, data=_data, model=_model, run=_run,
    evaluate=lambda ck, cfg, episodes=None: evaluate_checkpoint(ck, cfg, episodes),
    resumable=True, resolve=resolve,
    help={"env": "gymnasium environment: " + ", ".join(ENVS),
          "steps": "environment steps per seed",
          "buffer_size": "replay buffer capacity (transitions)",
          "learning_starts": "environment steps before the first update",
          "target_update": "copy the target network every this many environment steps",
          "tau": "Polyak coefficient (< 1: average the target after every update)",
          "train_freq": "train every this many environment steps",
          "gradient_steps": "gradient steps each time it trains",
          "exploration_fraction": "fraction of the run over which ε falls from 1",
          "final_eps": "ε after the fall", "gamma": "discount γ",
          "hidden": "Q-network hidden widths, e.g. 256,256", "loss": "huber | mse",
          "max_grad_norm": "clip the gradient's global norm (0: no clipping)",
          "double": "Double DQN targets", "dueling": "dueling value/advantage head",
          "eval_every": "greedy evaluation every this many environment steps",
          "eval_episodes": "episodes per greedy evaluation",
          "seeds": "train this many seeds (seed, seed+1, ...) and report the per-seed table",
          "epochs": "(unused: DQN is counted in environment steps, --steps)"},
    choices={"env": ENVS, "loss": ("huber", "mse")},
    headline=("return", "greedy return"),
))
