"""VAEStep and GANStep on the Loop: they learn (a few steps, the loss goes down), log their
several losses, and resume bit-identically after SIGKILL; the IWAE estimate sits above the
ELBO; the shipped classifier and the FID / classifier-IS scores."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tensorcalc import data as D
from tensorcalc import optim
from tensorcalc.data import DataLoader, TensorDataset
from tensorcalc.models.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from tensorcalc.models.vae import VAE
from tensorcalc.train import Callback, Loop
from tensorcalc.train import generative_metrics as GM
from tensorcalc.train.generative_steps import GANStep, VAEStep

HERE = os.path.dirname(os.path.abspath(__file__))


def _images(n=256):
    s = D.mnist10k_split(test_size=2000, seed=0)
    return (s.train[0][:n] / 255.0).astype(np.float32), s.train[1][:n].astype(np.int64)


def make_vae(seed=0, conditional=True):
    x, y = _images()
    m = VAE(784, 32, 4, num_classes=10 if conditional else 0, rng=seed)
    step = VAEStep(m, optim.Adam(m.parameters(), lr=3e-3), binarize="dynamic", rng=seed + 1)
    loader = DataLoader(TensorDataset(x.reshape(-1, 784), y), batch_size=64, shuffle=True,
                        rng=seed + 2)
    return step, dict(data=loader, epochs=4, val_data=(x[:64].reshape(-1, 784), y[:64]),
                      checkpoint_every=3)


def make_gan(seed=0, kind="wgan-gp"):
    x, _ = _images()
    x = x.reshape(-1, 1, 28, 28) * 2 - 1
    if kind == "dcgan":
        g = DCGANGenerator(8, channels=(8, 4), rng=seed)
        d = DCGANDiscriminator(channels=(4, 8), rng=seed + 1)
        kind, nc, lr, betas = "nonsaturating", 1, 2e-4, (0.5, 0.999)
    else:
        g, d = MLPGenerator(8, (32,), rng=seed), MLPDiscriminator((32,), rng=seed + 1)
        nc, lr, betas = 2, 1e-3, (0.0, 0.9)
    step = GANStep(g, d, optim.Adam(g.parameters(), lr=lr, betas=betas),
                   optim.Adam(d.parameters(), lr=lr, betas=betas), kind=kind, n_critic=nc,
                   rng=seed + 3, eval_samples=16, grid=4, scorer=lambda im: {
                       "fid": float(np.abs(im.mean() - 0.13)), "is": 1.0})
    loader = DataLoader(TensorDataset(x), batch_size=32 * nc, shuffle=True, rng=seed + 2)
    return step, dict(data=loader, steps=12, eval_every=4, val_data=0, checkpoint_every=5,
                      monitor="val_fid")


MAKERS = {"vae": make_vae, "gan": make_gan, "dcgan": lambda s=0: make_gan(s, "dcgan")}


class Freeze(Callback):
    def __init__(self, at, marker):
        self.at, self.marker = at, marker

    def on_batch_end(self, host, logs):
        if host.global_step == self.at:
            with open(self.marker, "w") as f:
                f.write("frozen")
            time.sleep(60)


def run(kind, out_dir=None, resume=False, callbacks=()):
    step, kw = MAKERS[kind](0)
    loop = Loop(step, out_dir=out_dir, callbacks=callbacks, quiet=True, tensorboard=False, **kw)
    loop.run(resume_from=os.path.join(out_dir, "checkpoints", "last") if resume else None)
    return step, loop


def _strip(h):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in h]


def _dump(step, loop, out):
    """The final state of a run, for comparison across processes."""
    arrays = {f"{n}/{k}": v for n, m in step.modules.items() for k, v in m.state_dict().items()}
    arrays.update({f"arrays/{k}": v for k, v in step.state_arrays().items()})
    np.savez(os.path.join(out, "final.npz"), **arrays)
    with open(os.path.join(out, "final.json"), "w") as f:
        json.dump({"history": _strip(loop.history), "global_step": loop.global_step,
                   "rngs": {k: g.bit_generator.state for k, g in step.rngs.items()}}, f,
                  default=float)


if __name__ == "__main__":  # the children of the SIGKILL test: run | freeze at a step | resume
    kind, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "freeze":
        run(kind, out, callbacks=[Freeze(int(sys.argv[4]), sys.argv[5])])
        sys.exit(3)  # never reached: the parent kills the process first
    step, loop = run(kind, out, resume=mode == "resume")
    _dump(step, loop, out)
    sys.exit(0)


def _child(*args, **kw):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "test_generative_steps.py"),
                             *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, **kw)


@pytest.mark.parametrize("kind, at", [("vae", 9), ("gan", 7)])
def test_sigkill_then_resume_is_bit_identical(tmp_path, kind, at):
    """Reference, killed and resumed runs each in a fresh process (so BLAS state left by other
    tests in this process cannot change a rounding)."""
    ref, out, marker = str(tmp_path / "ref"), str(tmp_path / "run"), str(tmp_path / "frozen")
    reference = _child(kind, ref, "run")
    child = _child(kind, out, "freeze", at, marker)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(marker):
            assert child.poll() is None, child.stdout.read().decode()
            assert time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    resumed = _child(kind, out, "resume")
    for p in (reference, resumed):
        assert p.wait(timeout=240) == 0, p.stdout.read().decode()
    a, b = (json.load(open(os.path.join(d, "final.json"))) for d in (out, ref))
    assert a == b and a["global_step"] == (16 if kind == "vae" else 12)
    za, zb = (np.load(os.path.join(d, "final.npz")) for d in (out, ref))
    assert sorted(za.files) == sorted(zb.files) and any(k.startswith("arrays/") for k in
                                                         za.files) == (kind == "gan")
    for k in za.files:
        assert np.array_equal(za[k], zb[k]), k


def test_vae_learns_and_logs_both_terms():
    step, loop = run("vae")
    h = loop.history
    assert {"train_loss", "train_recon", "train_kl", "train_elbo", "val_recon", "val_kl",
            "val_elbo"} <= set(h[0])
    assert h[-1]["train_loss"] < 0.9 * h[0]["train_loss"]
    r = h[-1]
    assert r["val_loss"] == pytest.approx(r["val_recon"] + r["val_kl"])
    x, y = loop.val_data
    xb = (np.random.default_rng(0).random(x.shape) < x).astype(np.float32)
    lk = step.iwae(xb, y, k=20)
    l1 = step.iwae(xb, y, k=1)
    assert lk.shape == (64,) and np.all(np.isfinite(lk))
    assert lk.mean() > l1.mean()        # the IWAE bound tightens the ELBO


@pytest.mark.parametrize("kind", ["gan", "dcgan"])
def test_gan_steps_log_both_losses_and_frames(kind):
    step, loop = run(kind)
    h = loop.history
    assert loop.global_step == 12 and len(h) == 3
    need = {"train_loss_d", "train_loss_g", "val_fid"}
    need |= {"train_wasserstein", "train_gp"} if kind == "gan" else {"train_d_real"}
    assert need <= set(h[0])
    assert len(step.frames) == 3 and step.frames[0].shape == (4, 1, 28, 28)
    assert 0.0 <= step.frames[-1].min() and step.frames[-1].max() <= 1.0
    if kind == "gan":  # the critic learns to separate: its Wasserstein estimate grows
        assert h[-1]["train_wasserstein"] > h[0]["train_wasserstein"] > 0


def test_gan_step_checks_the_batch_splits():
    step, _ = make_gan()
    with pytest.raises(ValueError, match="n_critic"):
        step.step((np.zeros((63, 1, 28, 28), np.float32),))


# ------------------------------------------------------------------------- FID / IS
def test_frechet_distance_is_zero_for_a_set_with_itself_and_symmetric():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 6)), rng.standard_normal((400, 6)) * 1.5 + 0.3
    assert GM.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert GM.frechet_distance(a, b) == pytest.approx(GM.frechet_distance(b, a), rel=1e-8)
    # 1-D Gaussians: (μ1 − μ2)² + (σ1 − σ2)²
    m = (np.array([0.0]), np.array([[4.0]]))
    n = (np.array([1.0]), np.array([[1.0]]))
    assert GM.frechet_distance(m, n) == pytest.approx(1.0 + (2.0 - 1.0) ** 2)


def test_classifier_score_bounds():
    assert GM.classifier_score(np.full((10, 10), 0.1)) == pytest.approx(1.0)
    assert GM.classifier_score(np.eye(10)) == pytest.approx(10.0, rel=1e-6)


def test_shipped_classifier_scores_real_digits_near_the_floor_and_noise_far():
    s = D.mnist10k_split(test_size=2000, seed=0)
    test, train = s.test[0][:500] / 255.0, s.train[0][:500] / 255.0
    f, p = GM.classifier_outputs(test)
    assert f.shape == (500, 84) and (p.argmax(1) == s.test[1][:500]).mean() > 0.96
    sc = GM.GenerativeScorer(test, train)
    b = sc.baselines()
    assert b["floor_fid"] < 20 < 300 < b["noise_fid"]   # 500 images: FID has a small-n bias
    assert b["floor_is"] > 8.5 and b["noise_is"] < 2
    assert sc(test)["fid"] == pytest.approx(0.0, abs=1e-6)


def test_shipped_fashion_classifier_is_the_lenet_recipes_and_scores_fashion_images():
    from safetensors import safe_open

    path = os.path.join(GM.WEIGHTS_DIR, GM.CLASSIFIERS["fashion-mnist"][0])
    with safe_open(path, "np") as f:
        meta = f.metadata()
    assert meta["recipe"] == "lenet" and meta["dataset"] == "fashion-mnist"
    assert json.loads(meta["config"])["dataset"] == "fashion-mnist"
    assert GM.load_classifier("fashion-mnist") is not GM.load_classifier("mnist10k")
    try:
        x, y = D.load_fashion_mnist("test")
    except FileNotFoundError:
        pytest.skip("Fashion-MNIST is not on this machine (the weights were checked above)")
    f, p = GM.classifier_outputs(x[:1000] / 255.0, "fashion-mnist")
    assert f.shape == (1000, 84) and (p.argmax(1) == y[:1000]).mean() > 0.85
    b = GM.GenerativeScorer(x[:1000] / 255.0, dataset="fashion-mnist").baselines()
    assert b["noise_fid"] > 100 and b["noise_is"] < 2.5


def test_gaussian_decoder_and_beta_weight_the_kl():
    x, _ = _images(128)
    x = x.reshape(-1, 784)
    m = VAE(784, 32, 3, decoder="gaussian", rng=0)
    step = VAEStep(m, optim.Adam(m.parameters(), lr=3e-3), beta=4.0, rng=1)
    first = step.step((x,))
    for _ in range(15):
        last = step.step((x,))
    assert last["loss"] < first["loss"]
    assert last["loss"] == pytest.approx(last["recon"] + 4.0 * last["kl"], rel=1e-5)
    ev = step.evaluate((x,))
    assert ev["loss"] == pytest.approx(ev["recon"] + 4.0 * ev["kl"])
    assert ev["elbo"] == pytest.approx(-(ev["recon"] + ev["kl"]))
    assert "decoder_logvar" in dict(m.named_parameters())


def test_dcgan_init_draws_the_papers_distributions_and_the_recipe_picks_it_per_loss():
    from tensorcalc.models.gan import DCGANDiscriminator, DCGANGenerator, dcgan_init_
    from tensorcalc.recipes.gan import DEFAULTS, _models, resolve

    g = dcgan_init_(DCGANGenerator(64, rng=0), rng=1)
    sd = {k: np.asarray(v) for k, v in g.state_dict().items()}
    for k in ("0.weight", "4.weight", "7.weight"):          # linear, two transposed convs
        assert sd[k].dtype == np.float32 and abs(sd[k].std() - 0.02) < 0.002, k
    for k in ("0.bias", "4.bias", "7.bias", "1.bias", "5.bias"):
        assert not sd[k].any(), k
    assert abs(sd["1.weight"].mean() - 1) < 0.002 and abs(sd["1.weight"].std() - 0.02) < 0.002
    d = dcgan_init_(DCGANDiscriminator(rng=0), rng=1)
    assert abs(np.asarray(d[0].weight.data).std() - 0.02) < 0.004
    # same rng, same weights; the layers' default init is something else (Kaiming-uniform)
    g2 = dcgan_init_(DCGANGenerator(64, rng=5), rng=1)
    assert np.array_equal(np.asarray(g2[4].weight.data), sd["4.weight"])
    assert np.asarray(DCGANGenerator(64, rng=0)[0].weight.data).std() > 0.05
    # the non-saturating recipe takes the DCGAN init; the Wasserstein losses keep the defaults
    base = {**DEFAULTS, "seed": 0}
    assert resolve(base)["init"] == "dcgan"
    assert resolve({**base, "loss": "wgan-gp"})["init"] == "default"
    # a setting the user gives wins, even where it equals the non-saturating default
    from tensorcalc.recipes import get_recipe
    rec = get_recipe("gan")
    assert rec.config({"loss": "wgan-gp"})["init"] == "default"
    c = rec.config({"loss": "wgan-gp", "init": "dcgan", "lr": 2e-4})
    assert (c["init"], c["lr"], c["beta1"], c["n_critic"]) == ("dcgan", 2e-4, 0.0, 5)
    gd, _ = _models(resolve(base), np.random.default_rng(0))
    gw, _ = _models(resolve({**base, "loss": "wgan-gp"}), np.random.default_rng(0))
    assert abs(np.asarray(gd[0].weight.data).std() - 0.02) < 0.002
    assert np.asarray(gw[0].weight.data).std() > 0.05
