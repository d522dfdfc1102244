"""Learning-rate schedules against their closed forms (computed here, independently)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import tensorcalc as tc
from tensorcalc import optim
from tensorcalc.optim import lr_scheduler as S

BASE = (0.1, 0.03)  # two parameter groups with different base rates


def make_opt(cls=optim.SGD, **kw):
    p = tc.Tensor(np.ones(3), requires_grad=True)
    q = tc.Tensor(np.ones(2), requires_grad=True)
    return cls([{"params": [p], "lr": BASE[0]}, {"params": [q], "lr": BASE[1]}], **kw)


def trace(sched, steps):
    """Rates for t = 0..steps (t = 0 is set by the constructor)."""
    out = [sched.get_last_lr()]
    assert out[0] == [g["lr"] for g in sched.optimizer.param_groups]
    for _ in range(steps):
        sched.optimizer.step()
        sched.step()
        lrs = sched.get_last_lr()
        assert lrs == [g["lr"] for g in sched.optimizer.param_groups]
        out.append(lrs)
    return np.array(out)


def closed(f, steps):
    return np.array([[f(b, t) for b in BASE] for t in range(steps + 1)])


def test_step_lr():
    got = trace(S.StepLR(make_opt(), step_size=3, gamma=0.5), 10)
    np.testing.assert_allclose(got, closed(lambda b, t: b * 0.5 ** (t // 3), 10), rtol=1e-15)
    assert got[2, 0] == BASE[0] and math.isclose(got[3, 0], BASE[0] / 2)


def test_multistep_lr():
    got = trace(S.MultiStepLR(make_opt(), milestones=[2, 5, 6], gamma=0.1), 9)
    n = lambda t: (t >= 2) + (t >= 5) + (t >= 6)
    np.testing.assert_allclose(got, closed(lambda b, t: b * 0.1 ** n(t), 9), rtol=1e-15)


def test_exponential_lr():
    got = trace(S.ExponentialLR(make_opt(), gamma=0.9), 12)
    np.testing.assert_allclose(got, closed(lambda b, t: b * 0.9 ** t, 12), rtol=1e-14)


def test_cosine_annealing_lr():
    T, eta = 8, 1e-3
    got = trace(S.CosineAnnealingLR(make_opt(), T_max=T, eta_min=eta), 12)
    f = lambda b, t: eta + (b - eta) * (1 + math.cos(math.pi * t / T)) / 2
    np.testing.assert_allclose(got, closed(f, 12), rtol=1e-14)
    np.testing.assert_allclose(got[T], [eta, eta], rtol=1e-12)  # the bottom at T_max
    np.testing.assert_allclose(got[0], BASE)


def test_linear_warmup_alone_and_followed_by_cosine():
    W, f0 = 4, 0.1
    got = trace(S.LinearWarmup(make_opt(), warmup_steps=W, start_factor=f0), 7)
    f = lambda b, t: b * (f0 + (1 - f0) * t / W) if t < W else b
    np.testing.assert_allclose(got, closed(f, 7), rtol=1e-14)

    opt = make_opt()
    T = 6
    sched = S.LinearWarmup(opt, warmup_steps=W, after=S.CosineAnnealingLR(opt, T_max=T))
    got = trace(sched, W + T)

    def g(b, t):
        if t < W:
            return b * t / W
        return b * (1 + math.cos(math.pi * (t - W) / T)) / 2

    np.testing.assert_allclose(got, closed(g, W + T), rtol=1e-12, atol=1e-15)
    assert sched.after.last_epoch == T
    with pytest.raises(ValueError, match="same optimizer"):
        S.LinearWarmup(make_opt(), 3, after=S.CosineAnnealingLR(make_opt(), 5))


def _one_cycle_ref(t, m, T, pct, div, fdiv, three, strategy="cos"):
    init, lo = m / div, m / div / fdiv
    up = pct * T - 1
    if strategy == "cos":
        ann = lambda s, e, x: e + (s - e) * (1 + math.cos(math.pi * x)) / 2
    else:
        ann = lambda s, e, x: s + (e - s) * x
    if t <= up:
        return ann(init, m, t / up)
    if not three:
        return ann(m, lo, (t - up) / (T - 1 - up))
    if t <= 2 * up:
        return ann(m, init, (t - up) / up)
    return ann(init, lo, (t - 2 * up) / (T - 1 - 2 * up))


@pytest.mark.parametrize("three,strategy", [(False, "cos"), (True, "cos"), (False, "linear")])
def test_one_cycle_lr(three, strategy):
    T, pct, div, fdiv = 20, 0.25, 10.0, 100.0
    opt = make_opt(momentum=0.9)
    sched = S.OneCycleLR(opt, max_lr=[1.0, 0.5], total_steps=T, pct_start=pct, div_factor=div,
                         final_div_factor=fdiv, three_phase=three, anneal_strategy=strategy)
    got = trace(sched, T - 1)
    expect = np.array([[_one_cycle_ref(t, m, T, pct, div, fdiv, three, strategy)
                        for m in (1.0, 0.5)] for t in range(T)])
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-15)
    assert math.isclose(got[0, 0], 0.1) and math.isclose(got.max(), 1.0)
    assert math.isclose(got[-1, 0], 1.0 / div / fdiv)
    # momentum runs opposite to the rate: highest at the ends, lowest at the peak
    peak = int(pct * T - 1)
    assert math.isclose(opt.param_groups[0]["momentum"], 0.95)
    sched2 = S.OneCycleLR(make_opt(momentum=0.9), max_lr=1.0, total_steps=T, pct_start=pct)
    for _ in range(peak):
        sched2.step()
    assert math.isclose(sched2.optimizer.param_groups[0]["momentum"], 0.85)
    sched.step()  # t = T is allowed (the step after the last optimiser step), as in PyTorch
    with pytest.raises(ValueError, match="total_steps"):
        sched.step()


def test_one_cycle_cycles_adam_beta1_and_needs_momentum():
    p = tc.Tensor(np.ones(2), requires_grad=True)
    opt = optim.Adam([p])
    S.OneCycleLR(opt, max_lr=0.1, total_steps=10)
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    with pytest.raises(ValueError, match="cycle_momentum"):
        S.OneCycleLR(optim.Adagrad([p]), max_lr=0.1, total_steps=10)
    S.OneCycleLR(optim.Adagrad([p]), max_lr=0.1, total_steps=10, cycle_momentum=False)


def test_reduce_on_plateau():
    opt = make_opt()
    sched = S.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=2, cooldown=1,
                                min_lr=[0.03, 0.0])
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95,   # 3 bad steps > patience 2: reduce at step 5
               0.95,                          # cooldown: not counted
               0.95, 0.95, 0.95,              # 3 more bad: reduce again (group 0 hits min_lr)
               0.5]                           # improvement
    lrs = []
    for m in metrics:
        sched.step(m)
        lrs.append(sched.get_last_lr())
    lrs = np.array(lrs)
    np.testing.assert_allclose(lrs[:4], [BASE] * 4)
    np.testing.assert_allclose(lrs[4:8], [[0.05, 0.015]] * 4)
    np.testing.assert_allclose(lrs[8:], [[0.03, 0.0075]] * 2)  # group 0 clamped at min_lr
    # "max" mode with an absolute threshold: 1.05 is not better than 1.0 + 0.1
    opt2 = make_opt()
    s2 = S.ReduceLROnPlateau(opt2, mode="max", patience=0, threshold=0.1, threshold_mode="abs")
    s2.step(1.0)
    s2.step(1.05)
    np.testing.assert_allclose(s2.get_last_lr(), [b * 0.1 for b in BASE])


def test_scheduler_drives_the_optimizer():
    p = tc.Tensor(np.zeros(1), requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = S.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = tc.ones_like(p)
        opt.step()
        sched.step()
    np.testing.assert_allclose(p.data, -(1 + 0.5 + 0.25))


@pytest.mark.parametrize("make", [
    lambda o: S.StepLR(o, 2, 0.5),
    lambda o: S.MultiStepLR(o, [2, 4]),
    lambda o: S.ExponentialLR(o, 0.8),
    lambda o: S.CosineAnnealingLR(o, 6, 1e-4),
    lambda o: S.LinearWarmup(o, 3, after=S.ExponentialLR(o, 0.9)),
    lambda o: S.OneCycleLR(o, 1.0, total_steps=12),
    lambda o: S.ReduceLROnPlateau(o, patience=1),
], ids=["step", "multistep", "exp", "cos", "warmup", "onecycle", "plateau"])
def test_state_dict_resume(make):
    """5 steps, state_dict through JSON, a fresh optimiser + schedule, 5 more == 10 straight."""
    metrics = [1.0, 0.8, 0.9, 0.9, 0.7, 0.75, 0.75, 0.8, 0.6, 0.6]

    def advance(s, ts):
        for t in ts:
            s.optimizer.step()
            s.step(metrics[t]) if isinstance(s, S.ReduceLROnPlateau) else s.step()

    a = make(make_opt(momentum=0.9))
    advance(a, range(10))
    b = make(make_opt(momentum=0.9))
    advance(b, range(5))
    state = json.loads(json.dumps(b.state_dict()))
    c_opt = make_opt(momentum=0.9)
    c = make(c_opt)
    c.load_state_dict(state)
    assert c.get_last_lr() == b.get_last_lr()
    advance(c, range(5, 10))
    assert c.get_last_lr() == a.get_last_lr()
    assert [g["lr"] for g in c_opt.param_groups] == a.get_last_lr()


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="step_size"):
        S.StepLR(make_opt(), step_size=0)
    with pytest.raises(ValueError, match="milestones"):
        S.MultiStepLR(make_opt(), milestones=[5, 2])
    with pytest.raises(ValueError, match="T_max"):
        S.CosineAnnealingLR(make_opt(), T_max=0)
    with pytest.raises(ValueError, match="warmup_steps"):
        S.LinearWarmup(make_opt(), warmup_steps=0)
    with pytest.raises(ValueError, match="pct_start"):
        S.OneCycleLR(make_opt(momentum=0.9), 1.0, total_steps=10, pct_start=1.5)
    with pytest.raises(ValueError, match="factor"):
        S.ReduceLROnPlateau(make_opt(), factor=1.0)
    with pytest.raises(TypeError, match="Optimizer"):
        S.StepLR(object(), 2)
