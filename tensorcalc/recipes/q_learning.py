"""q-learning — tabular Q-learning and SARSA on FrozenLake (slippery) and Taxi, judged against
the exact optimum.

Q-learning updates Q(s,a) ← Q(s,a) + α[r + γ max_a′ Q(s′,a′) − Q(s,a)] (SARSA bootstraps on
the action it takes next instead) from ε-greedy episodes, ε falling linearly from 1 to
``final_eps`` over ``exploration_fraction`` of the episodes. The learned greedy policy is
scored exactly (its success probability / expected return within the time limit, from the
environment's transition table) next to the optimal policy of value iteration, and by
``eval_episodes`` greedy episodes played in gymnasium.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..rl.mdp import MDP, plot_grid_values, value_iteration
from ..rl.schedules import LinearSchedule
from ..rl.tabular import q_learning, run_episodes, sarsa
from ..train import report as R
from ..train.pipeline import write_json
from . import Recipe, RecipeError, RunResult, register
from ._rl import env_data, make, plot_lines

ENVS = ("FrozenLake-v1", "FrozenLake8x8-v1", "Taxi-v4")
#: episodes and step size per environment when --episodes / --alpha are 0
ENV_DEFAULTS = {"FrozenLake-v1": {"episodes": 20_000, "alpha": 0.1},
                "FrozenLake8x8-v1": {"episodes": 60_000, "alpha": 0.1},
                "Taxi-v4": {"episodes": 5_000, "alpha": 0.5}}
METHODS = {"q-learning": q_learning, "sarsa": sarsa}


def env_list(cfg) -> list:
    return ["FrozenLake-v1", "Taxi-v4"] if cfg["env"] == "both" else [cfg["env"]]


def methods(cfg) -> list:
    return list(METHODS) if cfg["method"] == "both" else [cfg["method"]]


def learn_env(env_id: str, method: str, cfg: dict) -> dict:
    env = make(env_id)
    m = MDP.from_gym(env, cfg["gamma"])
    horizon = env.spec.max_episode_steps or 1000
    d = ENV_DEFAULTS[env_id]
    episodes = cfg["episodes"] or d["episodes"]
    alpha = cfg["alpha"] or d["alpha"]
    eps = LinearSchedule(1.0, cfg["final_eps"], cfg["exploration_fraction"] * episodes)
    t0 = time.perf_counter()
    res = METHODS[method](env, episodes, gamma=cfg["gamma"], alpha=alpha, epsilon=eps,
                          seed=cfg["seed"])
    seconds = time.perf_counter() - t0
    lake = env_id.startswith("FrozenLake")
    score = (lambda p: m.success_rate(p, horizon)) if lake else (
        lambda p: m.expected_return(p, horizon))
    opt = value_iteration(m)
    learned = np.append(res.policy, 0)  # the absorbing state's action is irrelevant
    mc = run_episodes(env, res.policy, cfg["eval_episodes"], seed=cfg["seed"] + 1)
    env.close()
    return {"env": env_id, "method": res.method, "result": res, "mdp": m, "opt": opt,
            "episodes": episodes, "alpha": alpha, "seconds": seconds,
            "figure": "success rate" if lake else "mean return",
            "exact": score(learned), "optimum": score(opt.policy),
            "mc": float(mc.mean()), "mc_se": float(mc.std() / np.sqrt(len(mc))),
            "same_actions": float(np.mean(res.policy == opt.policy[:-1])),
            "q_error": float(np.abs(res.q - opt.q[:-1]).max())}


def _run(cfg, run_dir, quiet=False, progress=None):
    for k in ("final_eps", "exploration_fraction"):
        if not 0 <= cfg[k] <= 1:
            raise RecipeError(f"--{k.replace('_', '-')} must be in [0, 1], got {cfg[k]!r}")
    if cfg["alpha"] < 0 or cfg["episodes"] < 0 or cfg["eval_episodes"] < 1:
        raise RecipeError("--alpha and --episodes must be >= 0 (0: the environment's "
                          "default) and --eval-episodes >= 1")
    results = []
    for env_id in env_list(cfg):
        for meth in methods(cfg):
            r = learn_env(env_id, meth, cfg)
            results.append(r)
            if not quiet:
                print(f"  {r['method']:<10} {env_id:<17} {r['episodes']:>6,} episodes "
                      f"(α {r['alpha']:g}) in {r['seconds']:.1f} s: greedy {r['figure']} "
                      f"{r['exact']:.4f} exact (optimum {r['optimum']:.4f}), {r['mc']:.3f} ± "
                      f"{r['mc_se']:.3f} over {cfg['eval_episodes']} episodes", flush=True)
    header = ["method", "environment", "episodes", "α", "greedy policy (exact)", "optimum",
              f"greedy episodes ({cfg['eval_episodes']})", "actions as optimal",
              "max |Q − Q*|", "seconds"]
    rows = [[r["method"], r["env"], r["episodes"], r["alpha"],
             f"{r['figure']} {r['exact']:.4f}", f"{r['optimum']:.4f}",
             f"{r['mc']:.3f} ± {r['mc_se']:.3f}", f"{100 * r['same_actions']:.0f} %",
             f"{r['q_error']:.3f}", f"{r['seconds']:.1f}"] for r in results]
    rep = R.HTMLReport("q-learning: tabular TD control",
                       ", ".join(sorted({r["env"] for r in results})))
    rep.cards([(f"{r['method']} {r['env']}", f"{r['mc']:.3f}") for r in results])
    rep.section("Greedy policies against the optimum")
    rep.table(rows, header, caption="'exact': the learned greedy policy's success probability "
              "or expected return from the transition table; 'optimum': value iteration's; "
              "'actions as optimal' can be below 100 % where actions tie.")
    rep.section("Learning curves")
    for env_id in env_list(cfg):
        rs = [r for r in results if r["env"] == env_id]
        window = max(1, rs[0]["episodes"] // 100)
        series = [(r["method"], np.arange(1, r["episodes"] + 1),
                   _moving(r["result"].returns, window)) for r in rs]
        png = plot_lines(series, os.path.join(run_dir, f"{env_id}_returns.png"), "episode",
                         f"training return (mean of {window})", f"{env_id}: ε-greedy episodes",
                         hline=rs[0]["optimum"])
        rep.figure(png, f"{env_id}: returns of the ε-greedy training episodes (trailing mean "
                        f"of {window}); dashed: the optimal policy's exact figure.")
        for r in rs:
            m = r["mdp"]
            if m.desc is not None and env_id.startswith("FrozenLake"):
                q = np.vstack([r["result"].q, np.zeros((1, m.n_actions))])
                png = plot_grid_values(m, q.max(axis=1), np.append(r["result"].policy, 0),
                                       os.path.join(run_dir, f"{env_id}_{r['method']}.png"),
                                       title=f"{env_id}: {r['method']} max_a Q and policy")
                rep.figure(png, f"{r['method']} on {env_id}: learned max_a Q(s, a) and its "
                                "greedy action.")
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    test = {}
    for r in results:
        key = f"{r['method'].lower()}_{r['env'].split('-')[0].lower()}"
        test[f"{key}_episodes"] = r["mc"]
        test[f"{key}_exact"] = float(r["exact"])
    write_json(os.path.join(run_dir, "metrics.json"), {"test": test, "rows": rows,
                                                       "header": header})
    return RunResult(run_dir=run_dir, test=test, report=report, config=cfg,
                     train_seconds=float(sum(r["seconds"] for r in results)),
                     extra={"results": results})


def _moving(x, window):
    from ..rl.dqn import moving_average

    return moving_average(x, window)


register(Recipe(
    name="q-learning",
    description="tabular Q-learning and SARSA, judged against the exact optimum",
    defaults={"env": "both", "method": "both", "episodes": 0, "alpha": 0.0, "gamma": 0.99,
              "final_eps": 0.05, "exploration_fraction": 0.5, "eval_episodes": 1000,
              "val_fraction": 0.0, "epochs": 1},
    data=lambda cfg: env_data(env_list(cfg))(cfg), run=_run,
    help={"env": "both (FrozenLake-v1 and Taxi-v4) | " + " | ".join(ENVS),
          "method": "both | q-learning | sarsa",
          "episodes": "training episodes (0: 20,000 FrozenLake, 60,000 8×8, 5,000 Taxi)",
          "alpha": "step size α (0: 0.1 FrozenLake, 0.5 Taxi)", "gamma": "discount γ",
          "final_eps": "ε at the end of its fall",
          "exploration_fraction": "fraction of the episodes over which ε falls from 1",
          "eval_episodes": "greedy episodes played to score the learned policy",
          "epochs": "(unused: --episodes)"},
    choices={"env": ("both",) + ENVS, "method": ("both",) + tuple(METHODS)},
))
