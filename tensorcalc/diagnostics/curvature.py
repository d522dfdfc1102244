"""Curvature of a loss: the Hessian's top eigenvalues, trace and spectral density from
Hessian-vector products alone (as PyHessian does, Yao et al. 2020), for any model and loss.

The Hessian H = ∇²L(θ) of a network with n parameters is n × n — never formed here. Every tool
needs only v ↦ H v, which costs about two gradients: H v = ∇⟨∇L(θ), v⟩ (reverse over reverse:
the gradient is recorded with ``create_graph=True`` and differentiated once more along v).

* :func:`top_eigenvalues` — power iteration with deflation: vₜ₊₁ = (H − Σⱼ λⱼ uⱼuⱼᵀ) vₜ / ‖·‖,
  λ = vᵀHv, until λ changes by less than ``tol`` relative; the largest-|λ| eigenpairs first.
* :func:`lanczos` — m steps of Lanczos with full reorthogonalisation give H's restriction to
  the Krylov space K_m(H, v) as a tridiagonal T = tridiag(β, α, β); T's eigenvalues (the Ritz
  values) converge to the extreme eigenvalues of H first (:func:`lanczos_eigenvalues`).
* :func:`hutchinson_trace` — tr(H) = E[zᵀHz] for z with E[zzᵀ] = I (Rademacher ±1):
  the mean of zᵀHz over ``samples`` probes (standard error reported).
* :func:`spectral_density` — stochastic Lanczos quadrature (Golub & Meurant; Ubaru, Chen & Saad
  2017; Ghorbani et al. 2019): for a Gaussian probe v/‖v‖, the m-point Gauss quadrature of
  vᵀ f(H) v is Σₖ τₖ² f(θₖ) with (θₖ, τₖ) the eigenvalues and first eigenvector components of T.
  Averaging over probes estimates the spectral density φ(t) = (1/n) Σᵢ δ(t − λᵢ), smoothed by a
  Gaussian of width σ for plotting; its moments (1/n) tr(Hᵏ) = Σ nodes' weights θᵏ.

A Hessian comes from :class:`HessianOperator`: a model's parameters and a loss over one batch
or over a whole data set (a list of batches: the HVP of the mean loss is the size-weighted mean
of the batches' HVPs). Vectors are flat arrays of length n in the order of ``params``.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import device_of, to_device, to_numpy
from ..optim._second_order import FlatProblem

__all__ = ["HessianOperator", "top_eigenvalues", "lanczos", "lanczos_eigenvalues",
           "hutchinson_trace", "spectral_density", "density_moments", "density_on_grid",
           "dense_hessian", "SharpnessCallback", "curvature_summary"]


class HessianOperator:
    """v ↦ H v for the Hessian of a loss with respect to ``params``.

    ``loss_fn``: a callable returning the scalar loss Tensor (one batch), or a list of such
    callables (batches), whose HVPs are averaged with ``weights`` (default: equal). With a
    single batch the gradient's graph is recorded once and reused by every product.
    """

    def __init__(self, params, loss_fn, weights=None):
        self.problem = FlatProblem(list(params))
        self.n = self.problem.numel
        self.fns = list(loss_fn) if isinstance(loss_fn, (list, tuple)) else [loss_fn]
        if not self.fns:
            raise ValueError("HessianOperator: no batches")
        w = np.ones(len(self.fns)) if weights is None else np.asarray(weights, dtype=np.float64)
        if len(w) != len(self.fns):
            raise ValueError(f"HessianOperator: {len(self.fns)} batches but {len(w)} weights")
        self.weights = w / w.sum()
        self._gs = None
        self.matvecs = 0

    @classmethod
    def for_model(cls, model, loss, x, y, batch_size=None):
        """The Hessian of ``loss(model(x), y)`` in the model's parameters, on one batch or (with
        ``batch_size``) on the whole data set, split into batches."""
        from ..tensor import Tensor

        params = [p for p in model.parameters() if p.requires_grad]
        n = len(x)
        bs = n if batch_size is None else int(batch_size)

        dev = device_of(params[0].data)

        def make(lo, hi):
            xb, yb = to_device(np.asarray(x[lo:hi]), dev), y[lo:hi]
            return lambda: loss(model(Tensor(xb)), yb)

        fns = [make(lo, min(lo + bs, n)) for lo in range(0, n, bs)]
        sizes = [min(lo + bs, n) - lo for lo in range(0, n, bs)]
        return cls(params, fns, weights=sizes)

    def gradient(self):
        """∇L(θ) as one flat NumPy array."""
        return sum(w * to_numpy(self.problem.loss_and_grad(f, "curvature")[1])
                   for w, f in zip(self.weights, self.fns, strict=True))

    def matvec(self, v):
        """H v for a host (NumPy) vector v; the product runs on the parameters' device and
        comes back as a NumPy array."""
        pb = self.problem
        v = to_device(np.asarray(to_numpy(v), dtype=pb.dtype), device_of(pb.params[0].data))
        self.matvecs += 1
        if len(self.fns) == 1:
            if self._gs is None:
                self._gs = pb.loss_with_grad_graph(self.fns[0], "curvature")[1]
            return to_numpy(pb.hvp(self._gs, v))
        out = None
        for w, f in zip(self.weights, self.fns, strict=True):
            _, gs = pb.loss_with_grad_graph(f, "curvature")
            hv = w * to_numpy(pb.hvp(gs, v))
            out = hv if out is None else out + hv
        return out

    __call__ = matvec

    def release(self):
        """Drop the cached graph (the parameters changed, or memory is wanted back)."""
        self._gs = None


def _as_op(op):
    return op.matvec if hasattr(op, "matvec") else op


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def dense_hessian(op, n=None):
    """The full n × n Hessian from n products H eⱼ (for checks on small models)."""
    f = _as_op(op)
    n = op.n if n is None else n
    h = np.empty((n, n))
    e = np.zeros(n)
    for j in range(n):
        e[j] = 1
        h[:, j] = np.asarray(f(e), dtype=np.float64)
        e[j] = 0
    return (h + h.T) / 2


def top_eigenvalues(op, k=1, n=None, max_iter=200, tol=1e-6, rng=0):
    """The k eigenvalues of largest magnitude (and their eigenvectors) by power iteration with
    deflation. Returns (eigenvalues (k,), eigenvectors (n, k), products used)."""
    f = _as_op(op)
    n = op.n if n is None else n
    g = _rng(rng)
    vals, vecs, used = [], [], 0
    for _ in range(k):
        v = g.standard_normal(n)
        v /= np.linalg.norm(v)
        lam = None
        for _ in range(max_iter):
            for u in vecs:  # keep v orthogonal to the pairs already found
                v -= (u @ v) * u
            v /= np.linalg.norm(v)
            hv = np.asarray(f(v), dtype=np.float64)
            used += 1
            for lu, u in zip(vals, vecs, strict=True):
                hv -= lu * (u @ v) * u
            new = float(v @ hv)
            norm = np.linalg.norm(hv)
            if norm == 0:
                lam = 0.0
                break
            v = hv / norm
            if lam is not None and abs(new - lam) <= tol * (abs(lam) + 1e-12):
                lam = new
                break
            lam = new
        vals.append(lam)
        vecs.append(v)
    return np.array(vals), np.stack(vecs, axis=1), used


def lanczos(op, m, n=None, v0=None, rng=0):
    """m steps of Lanczos with full reorthogonalisation from v0 (default: a Gaussian probe).
    Returns (alpha (m′,), beta (m′ − 1,), Q (n, m′)); m′ < m if the Krylov space closes."""
    f = _as_op(op)
    n = op.n if n is None else n
    m = min(m, n)
    v = _rng(rng).standard_normal(n) if v0 is None else np.asarray(v0, dtype=np.float64).copy()
    v /= np.linalg.norm(v)
    qs, alpha, beta = [v], [], []
    for j in range(m):
        w = np.asarray(f(qs[j]), dtype=np.float64)
        a = float(qs[j] @ w)
        alpha.append(a)
        q = np.stack(qs, axis=1)
        w -= q @ (q.T @ w)           # full reorthogonalisation (twice is enough)
        w -= q @ (q.T @ w)
        b = float(np.linalg.norm(w))
        if j == m - 1 or b < 1e-10 * max(1.0, abs(a)):
            break
        beta.append(b)
        qs.append(w / b)
    return np.array(alpha), np.array(beta), np.stack(qs[:len(alpha)], axis=1)


def _tridiag_eigh(alpha, beta):
    t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    return np.linalg.eigh(t)


def lanczos_eigenvalues(op, k=1, m=None, n=None, rng=0):
    """The k largest (algebraic) eigenvalues of H from the Ritz values of m Lanczos steps
    (default m = max(2k + 20, 30))."""
    n = op.n if n is None else n
    m = max(2 * k + 20, 30) if m is None else m
    alpha, beta, _ = lanczos(op, m, n=n, rng=rng)
    theta, _ = _tridiag_eigh(alpha, beta)
    return theta[::-1][:k]


def _sketch(op, f, n, s, g, power_iters=0):
    """An orthonormal basis Q (n, s) of range(H S) for a Gaussian S (Hutch++'s sketch), refined
    by ``power_iters`` subspace iterations Q ← orth(H Q) (each makes the Ritz values of the top
    eigenvalues sharper), and the s × s matrix QᵀHQ. Costs (2 + power_iters)·s products."""
    def apply_cols(m):
        return np.stack([np.asarray(f(m[:, j]), dtype=np.float64) for j in range(m.shape[1])], 1)

    q, _ = np.linalg.qr(apply_cols(g.standard_normal((n, s))))
    for _ in range(power_iters):
        q, _ = np.linalg.qr(apply_cols(q))
    t = q.T @ apply_cols(q)
    return q, (t + t.T) / 2


def hutchinson_trace(op, samples=100, n=None, rng=0, method="hutchinson"):
    """tr(H) ≈ (1/s) Σ zᵀHz over s Rademacher probes z ∈ {±1}ⁿ (Hutchinson 1989). Returns
    (estimate, standard error of the stochastic part).

    ``method="hutch++"`` (Meyer, Musco, Musco & Woodruff 2021) spends the same number of
    products differently: a third of them sketch the dominant subspace Q = orth(H S), whose
    part tr(QᵀHQ) is computed exactly, and the rest estimate tr((I − QQᵀ)H(I − QQᵀ)) by
    Hutchinson — far less variance when a few eigenvalues dominate, as in networks.
    """
    f = _as_op(op)
    n = op.n if n is None else n
    g = _rng(rng)
    if method not in ("hutchinson", "hutch++"):
        raise ValueError(f"hutchinson_trace: method must be 'hutchinson' or 'hutch++', got "
                         f"{method!r}")
    q, exact = None, 0.0
    if method == "hutch++":
        k = max(1, min(samples // 3, n))
        q, t = _sketch(op, f, n, k, g)
        exact = float(np.trace(t))
        samples = max(samples - 2 * k, 1)
    est = []
    for _ in range(samples):
        z = g.choice([-1.0, 1.0], size=n)
        if q is not None:
            z = z - q @ (q.T @ z)
        est.append(float(z @ np.asarray(f(z), dtype=np.float64)))
    est = np.array(est)
    se = float(est.std(ddof=1) / math.sqrt(samples)) if samples > 1 else float("nan")
    return exact + float(est.mean()), se


def _projected(f, q):
    """x ↦ P H P x with P = I − QQᵀ (the operator on the complement of range(Q))."""
    def apply(x):
        y = np.asarray(f(x - q @ (q.T @ x)), dtype=np.float64)
        return y - q @ (q.T @ y)
    return apply


def spectral_density(op, n_vectors=10, m=60, n=None, rng=0, deflate=0, power_iters=2):
    """Stochastic Lanczos quadrature: nodes (p, m′) and weights (p, m′) whose rows are the
    quadrature rules; the density estimate is Σ over rows of Σₖ wₖ δ(t − θₖ) (the weights of all
    rows sum to 1), and its k-th moment estimates (1/n) tr(Hᵏ).

    With ``deflate = s > 0`` the dominant subspace Q = orth(H S) (s Gaussian columns, as in
    Hutch++, sharpened by ``power_iters`` subspace iterations) is resolved by its s Ritz values,
    each of weight 1/n, and the probes are projected onto its complement, which then carries
    weight (n − s)/n. The first moment stays unbiased (tr H = tr QᵀHQ + tr PHP, P = I − QQᵀ);
    higher ones drop the coupling ‖PHQ‖, small once Q is nearly invariant — much less variance
    when a few outlying eigenvalues dominate, as they do in trained networks."""
    f = _as_op(op)
    n = op.n if n is None else n
    g = _rng(rng)
    rows_t, rows_w = [], []
    q = None
    if deflate:
        q, t = _sketch(op, f, n, min(deflate, n), g, power_iters=power_iters)
        theta = np.linalg.eigvalsh(t)
        rows_t.append(theta)
        rows_w.append(np.full(len(theta), 1.0 / n))
    rest = (n - (0 if q is None else q.shape[1])) / n
    for _ in range(n_vectors):
        v = g.standard_normal(n)
        if q is not None:
            v -= q @ (q.T @ v)
            v -= q @ (q.T @ v)
            alpha, beta, _ = lanczos(_projected(f, q), m, n=n, v0=v)
        else:
            alpha, beta, _ = lanczos(f, m, n=n, v0=v)
        theta, s = _tridiag_eigh(alpha, beta)
        rows_t.append(theta)
        rows_w.append(rest * s[0] ** 2 / n_vectors)
    width = max(len(t) for t in rows_t)
    pad = lambda a: np.pad(a, (0, width - len(a)))  # noqa: E731  (zero weight: no contribution)
    return np.stack([pad(t) for t in rows_t]), np.stack([pad(w) for w in rows_w])


def density_moments(nodes, weights, k):
    """(1/n) tr(Hᵏ) estimated from the quadrature: Σ w θᵏ over every node."""
    return float(np.sum(weights * nodes ** k))


def density_on_grid(nodes, weights, grid, sigma):
    """The spectral density smoothed by a Gaussian of width σ, on ``grid``."""
    grid = np.asarray(grid, dtype=np.float64)
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    k = np.exp(-0.5 * z ** 2) / (sigma * math.sqrt(2 * math.pi))
    return np.sum(weights[..., None] * k, axis=(0, 1))


def curvature_summary(op, k=3, trace_samples=300, n_vectors=10, m=40, deflate=100, rng=0):
    """Top-k eigenvalues (Lanczos and power iteration), trace (Hutch++) and the SLQ density
    (deflated) of one Hessian operator, as one dict."""
    lz = lanczos_eigenvalues(op, k=k, m=max(m, 2 * k + 20), rng=rng)
    pw, _, used = top_eigenvalues(op, k=k, rng=rng, tol=1e-5)
    tr, se = hutchinson_trace(op, samples=min(trace_samples, 3 * op.n), rng=rng,
                              method="hutch++")
    nodes, weights = spectral_density(op, n_vectors=n_vectors, m=m, rng=rng,
                                      deflate=min(deflate, op.n // 4))
    return {"n": op.n, "top_lanczos": lz.tolist(), "top_power": pw.tolist(),
            "power_matvecs": used, "trace": tr, "trace_se": se,
            "slq_trace": density_moments(nodes, weights, 1) * op.n,
            "nodes": nodes, "weights": weights}


class SharpnessCallback:
    """λ_max of the training loss's Hessian on a fixed batch, every ``every`` epochs, logged as
    ``sharpness`` beside ``2/lr`` (gradient descent on a quadratic is stable only while
    λ_max < 2/η; Cohen et al. 2021 saw full-batch GD train at this "edge of stability").

    ``loss_fn()`` returns the loss on the fixed batch for the model's current parameters.
    """

    order = 60

    def __init__(self, params, loss_fn, every=1, max_iter=50, tol=1e-3):
        self.params = list(params)
        self.loss_fn = loss_fn
        self.every = every
        self.max_iter = max_iter
        self.tol = tol
        self.history = []

    def measure(self):
        op = HessianOperator(self.params, self.loss_fn)
        lam, _, _ = top_eigenvalues(op, k=1, max_iter=self.max_iter, tol=self.tol)
        return float(lam[0])

    # the Callback protocol of tensorcalc.train (duck-typed: no import of train from here)
    def on_fit_start(self, trainer):
        pass

    def on_epoch_start(self, trainer, epoch):
        pass

    def on_batch_end(self, trainer, logs):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch % self.every:
            return
        lam = self.measure()
        lr = getattr(trainer, "lr", None)
        lr = lr() if callable(lr) else lr
        logs["sharpness"] = lam
        if lr:
            logs["2/lr"] = 2.0 / float(lr)
        self.history.append({"epoch": epoch, "sharpness": lam, "lr": lr})

    def on_fit_end(self, trainer):
        pass

    def state_dict(self):
        return {"history": self.history}

    def load_state_dict(self, state):
        self.history = list(state.get("history", []))
