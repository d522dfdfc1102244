"""Shared pieces of the reinforcement-learning recipes (mdp, q-learning, dqn): the gymnasium
check, the placeholder Data of an environment, run-directory helpers and figures."""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..train import report as R
from . import Data, RecipeError

INSTALL_HINT = ("the reinforcement-learning recipes need gymnasium: pip install "
                "'tensorcalc[rl]' (or pip install gymnasium)")


def gym():
    """The gymnasium module, or a RecipeError saying how to install it."""
    try:
        import gymnasium
    except ImportError:
        raise RecipeError(INSTALL_HINT) from None
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="gymnasium")
    return gymnasium


def make(env_id: str, **kw):
    g = gym()
    try:
        return g.make(env_id, **kw)
    except Exception as e:  # unknown id, deprecated version, missing extra
        raise RecipeError(f"cannot make environment {env_id!r}: {e}") from None


def env_data(env_ids) -> callable:
    """A recipe's ``data(cfg)``: checks gymnasium and the environment(s), and returns a
    placeholder :class:`Data` (an environment has no fixed data set; the pipeline's checks
    need one example)."""

    def data(cfg):
        ids = env_ids(cfg) if callable(env_ids) else env_ids
        for i in ids:
            make(i).close()
        dummy = (np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
        name = ", ".join(ids)
        return Data(name=name, task="regression", train=dummy, test=dummy, title=name,
                    description=f"environment(s) {name} (gymnasium)")

    return data


def returns_table_row(returns) -> str:
    r = np.asarray(returns, dtype=np.float64)
    return f"{r.mean():.2f} ± {r.std():.2f}"


def plot_lines(series, path: str, xlabel: str, ylabel: str, title: str = "",
               hline: float | None = None, band=None) -> str:
    """Curves ``[(label, x, y), ...]`` (and optional ``band[label] = (lo, hi)``)."""
    fig = R.new_figure(7.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    colours = ["#2563eb", "#ea580c", "#16a34a", "#7c3aed", "#dc2626", "#6b7280"]
    for i, (label, x, y) in enumerate(series):
        c = colours[i % len(colours)]
        ax.plot(x, y, color=c, linewidth=1.6, label=label)
        if band and label in band:
            lo, hi = band[label]
            ax.fill_between(x, lo, hi, color=c, alpha=0.15, linewidth=0)
    if hline is not None:
        ax.axhline(hline, color="#6b7280", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=11)
    ax.legend(frameon=False, fontsize=8)
    R.style_axes(ax)
    return R.save_figure(fig, path)


def render_episode(make_env, policy, path: str, seed: int = 0, frames: int = 8,
                   max_steps: int = 1000) -> tuple[str, str]:
    """Play one greedy episode (``policy(obs) -> action``) and draw it: a strip of
    ``frames`` rendered frames (gymnasium ``render_mode="rgb_array"``, needs pygame) when the
    renderer works, otherwise a plot of the state trajectory. Returns (png, caption)."""
    images, states, total = [], [], 0.0
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame draws off-screen
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    try:
        env = make_env(render_mode="rgb_array")
        obs, _ = env.reset(seed=seed)
        env.render()  # fails here without pygame
        rendering = True
    except Exception:
        env = make_env()
        obs, _ = env.reset(seed=seed)
        rendering = False
    states.append(np.asarray(obs, dtype=np.float64))
    for _ in range(max_steps):
        if rendering:
            images.append(env.render())
        obs, r, term, trunc, _ = env.step(policy(obs))
        total += r
        states.append(np.asarray(obs, dtype=np.float64))
        if term or trunc:
            break
    env.close()
    steps = len(states) - 1
    if rendering and images:
        pick = np.linspace(0, len(images) - 1, min(frames, len(images))).round().astype(int)
        fig = R.new_figure(2.0 * len(pick), 2.0)
        for j, t in enumerate(pick):
            ax = fig.add_subplot(1, len(pick), j + 1)
            ax.imshow(images[t])
            ax.set_title(f"t = {t}", fontsize=8)
            ax.axis("off")
        R.save_figure(fig, path)
        return path, (f"one greedy episode (seed {seed}): {steps} steps, return {total:g}; "
                      f"{len(pick)} frames")
    x = np.stack(states)
    fig = R.new_figure(7.5, 3.6)
    ax = fig.add_subplot(1, 1, 1)
    for j in range(x.shape[1]):
        ax.plot(np.arange(len(x)), x[:, j], linewidth=1.3, label=f"s[{j}]")
    ax.set_xlabel("time step")
    ax.set_ylabel("state")
    ax.legend(frameon=False, fontsize=8, ncol=min(6, x.shape[1]))
    R.style_axes(ax)
    R.save_figure(fig, path)
    return path, (f"one greedy episode (seed {seed}): {steps} steps, return {total:g} — the "
                  "state trajectory (the frame renderer, pygame, is not installed)")


def ensure_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path
