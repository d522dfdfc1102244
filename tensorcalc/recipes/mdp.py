"""mdp — Markov decision processes solved exactly: value, policy and Q-value iteration on
FrozenLake 4×4 and 8×8 (slippery) and Taxi.

Each environment's transition table (gymnasium's ``env.unwrapped.P``) becomes a finite MDP
(P, R, γ), terminal transitions leading to an absorbing state. Value iteration applies the
Bellman optimality operator (T v)(s) = max_a [R(s,a) + γ Σ_s′ P(s,a,s′) v(s′)] until the
sup-norm change is ≤ ``tol``; policy iteration evaluates each policy exactly by the linear solve
v_π = (I − γP_π)⁻¹ r_π and improves greedily until the policy is stable. The optimal policy is
then scored two ways: *exactly* — its success probability / expected return within the
environment's time limit (a finite-horizon recursion over the same table) — and by
``episodes`` greedy episodes played in gymnasium.
"""

from __future__ import annotations

import os
import time

import numpy as np

from ..rl.mdp import MDP, plot_grid_values, policy_iteration, q_value_iteration, value_iteration
from ..rl.tabular import run_episodes
from ..train import report as R
from ..train.pipeline import write_json
from . import Recipe, RecipeError, RunResult, register
from ._rl import env_data, make

ENVS = ("FrozenLake-v1", "FrozenLake8x8-v1", "Taxi-v4")


def env_list(cfg) -> list:
    if cfg["env"] == "all":
        return list(ENVS)
    return [cfg["env"]]


def solve_env(env_id: str, gamma: float, tol: float, episodes: int, seed: int) -> dict:
    env = make(env_id)
    m = MDP.from_gym(env, gamma)
    horizon = env.spec.max_episode_steps or 1000
    t0 = time.perf_counter()
    vi = value_iteration(m, tol=tol)
    t_vi = time.perf_counter() - t0
    t0 = time.perf_counter()
    pi = policy_iteration(m)
    t_pi = time.perf_counter() - t0
    qvi = q_value_iteration(m, tol=tol)
    lake = env_id.startswith("FrozenLake")
    exact = m.success_rate(pi.policy, horizon) if lake else m.expected_return(pi.policy,
                                                                               horizon)
    mc = run_episodes(env, pi.policy[:-1], episodes, seed=seed) if episodes else np.zeros(1)
    env.close()
    return {"env": env_id, "mdp": m, "vi": vi, "pi": pi, "qvi": qvi, "horizon": horizon,
            "figure": "success rate" if lake else "mean return", "exact": exact,
            "mc": float(mc.mean()), "mc_se": float(mc.std() / np.sqrt(len(mc))),
            "agree": float(np.abs(vi.v - pi.v).max()),
            "residual": max(m.bellman_residual(vi.v), m.bellman_residual(pi.v),
                            m.bellman_residual(qvi.v)),
            "seconds_vi": t_vi, "seconds_pi": t_pi}


def _run(cfg, run_dir, quiet=False, progress=None):
    if not 0 <= cfg["gamma"] < 1:
        raise RecipeError(f"--gamma must be in [0, 1), got {cfg['gamma']!r}")
    if not cfg["tol"] > 0:
        raise RecipeError(f"--tol must be > 0, got {cfg['tol']!r}")
    results = [solve_env(e, cfg["gamma"], cfg["tol"], cfg["episodes"], cfg["seed"])
               for e in env_list(cfg)]
    header = ["environment", "VI iterations", "PI iterations", "Q-VI iterations",
              "‖v_VI − v_PI‖∞", "Bellman residual", "optimal policy (exact)",
              f"greedy episodes ({cfg['episodes']})"]
    rows = [[r["env"], r["vi"].iterations, r["pi"].iterations, r["qvi"].iterations,
             f"{r['agree']:.1e}", f"{r['residual']:.1e}", f"{r['figure']} {r['exact']:.4f}",
             f"{r['mc']:.3f} ± {r['mc_se']:.3f}"] for r in results]
    if not quiet:
        print(f"mdp: γ = {cfg['gamma']}, value iteration to tol {cfg['tol']:g}")
        for row in rows:
            print(f"  {row[0]:<17} VI {row[1]:>4} it, PI {row[2]:>3} it, Q-VI {row[3]:>4} it; "
                  f"|v_VI − v_PI| {row[4]}, residual {row[5]}; {row[6]} (exact), "
                  f"{row[7]} in {cfg['episodes']} greedy episodes")
    rep = R.HTMLReport("mdp: value and policy iteration",
                       f"γ = {cfg['gamma']}; exact solutions of {', '.join(env_list(cfg))}")
    rep.cards([(f"{r['env']} {r['figure']}", f"{r['exact']:.3f}") for r in results])
    rep.section("Solutions")
    rep.table(rows, header, caption="Exact figures are computed from the transition table "
              "over the environment's time limit; the greedy episodes are played in "
              "gymnasium (mean ± standard error).")
    rep.section("Figures")
    for r in results:
        m = r["mdp"]
        if m.desc is not None and r["env"].startswith("FrozenLake"):
            png = plot_grid_values(m, r["pi"].v, r["pi"].policy,
                                   os.path.join(run_dir, f"{r['env']}_values.png"),
                                   title=f"{r['env']}: v* and the optimal policy")
            rep.figure(png, f"{r['env']}: optimal values v*(s) (colour) and the optimal "
                            "action (arrow); H holes, G goal.")
    fig = R.new_figure(7.5, 3.8)
    ax = fig.add_subplot(1, 1, 1)
    for r in results:
        h = np.maximum(np.array(r["vi"].history), 1e-17)
        ax.semilogy(np.arange(1, len(h) + 1), h, label=r["env"])
    ax.set_xlabel("value-iteration sweep k")
    ax.set_ylabel(r"$\|v_k - v_{k-1}\|_\infty$")
    ax.legend(frameon=False, fontsize=8)
    R.style_axes(ax)
    png = R.save_figure(fig, os.path.join(run_dir, "vi_convergence.png"))
    rep.figure(png, "Value iteration converges geometrically (rate γ) on the slippery lakes; "
                    "on Taxi, deterministic with short episodes, it is exact after a few "
                    "sweeps.")
    rep.section("Hyperparameters")
    R.hyperparameter_table(rep, cfg)
    report = rep.save(os.path.join(run_dir, "report.html"))
    test = {}
    for r in results:
        key = r["env"].split("-")[0].lower()
        test[f"{key}_exact"] = float(r["exact"])
        test[f"{key}_episodes"] = r["mc"]
        test[f"{key}_pi_iterations"] = float(r["pi"].iterations)
        test[f"{key}_vi_iterations"] = float(r["vi"].iterations)
    write_json(os.path.join(run_dir, "metrics.json"), {"test": test, "rows": rows,
                                                       "header": header})
    return RunResult(run_dir=run_dir, test=test, report=report, config=cfg,
                     extra={"results": results})


register(Recipe(
    name="mdp",
    description="value, policy and Q-value iteration solving FrozenLake and Taxi exactly",
    defaults={"env": "all", "gamma": 0.99, "tol": 1e-10, "episodes": 1000,
              "val_fraction": 0.0, "epochs": 1},
    data=lambda cfg: env_data(env_list(cfg))(cfg), run=_run,
    help={"env": "all | " + " | ".join(ENVS), "gamma": "discount γ",
          "tol": "value iteration stops when the sup-norm change is at most this",
          "episodes": "greedy episodes played in gymnasium to check the exact figures",
          "epochs": "(unused)"},
    choices={"env": ("all",) + ENVS},
))
