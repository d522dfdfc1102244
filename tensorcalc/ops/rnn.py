"""Recurrences over a whole sequence, fused: the time loops of RNN, LSTM and GRU layers.

Primitives by DESIGN §2 rule (3). Composed step by step from matmul, sigmoid and tanh, a
32-step LSTM records ~15 nodes per step and the engine's per-node cost dominates the two small
GEMMs each step really needs (benchmarks/bench_rnn.py measures it). Fused, a layer is one node:

* the caller projects the inputs of all steps with one GEMM (``x W_ihᵀ + b``) outside the loop;
* forward runs the recurrence with one GEMM per step for all gates (h W_hhᵀ);
* backward recomputes every step's gates at once from the saved states (one GEMM over T·B
  rows, elementwise work vectorised over all steps), runs only the unavoidable sequential part
  (the cotangent of h_{t−1} through W_hh: one GEMM per step) and forms W̄_hh with one GEMM.

Backward therefore saves no gate activations: only the states h_t (and c_t) the layer returns.
The rules are written with the library's functions, so with ``create_graph=True`` they record a
graph (Hessian-vector products through an LSTM work) and on raw arrays they run at NumPy speed.

``mask`` (T, B) of booleans (keyword-only, not differentiable) marks real steps: at a padded
step (mask false) the state is carried unchanged, h_t = h_{t−1}, c_t = c_{t−1}. With padding at
the end of each sequence the final state is the state after its last real step, and a reversed
sequence starts from h₀ at its last real step — which is what variable-length and bidirectional
layers need. The equations below are written for mask true; carrying is
h_t = m_t ĥ_t + (1 − m_t) h_{t−1}, with ĥ_t the new state.
"""

from __future__ import annotations

from ..autodiff.function import Function, primitive
from ..backend import xp_of
from ..devices import cpu_jit as _jit
from ..tensor import Tensor
from ._util import cast_like, data_of, public, shape_of
from .elementwise import tanh
from .shape import concat, expand_dims, reshape, stack


def _previous(h0, hs):
    """(h₀, h₁, ..., h_{T−1}) as one (T, B, H) array: the state each step starts from."""
    return concat([expand_dims(h0, 0), hs[:-1]], axis=0)


def _rows(a):
    """(T, B, K) -> (T·B, K) so that one GEMM covers every step."""
    s = a.shape
    return reshape(a, (s[0] * s[1], s[2]))


def _mm_steps(a, w):
    """a (T, B, H) @ wᵀ for w (K, H) -> (T, B, K), as one GEMM."""
    s = a.shape
    return reshape(_rows(a) @ w.mT, (s[0], s[1], w.shape[0]))


def _mask_f(mask, like):
    """The (T, B) boolean mask as (T, B, 1) 0/1 values of ``like``'s dtype and device (a
    constant)."""
    if mask is None:
        return None
    xp = xp_of((data_of(like),))
    return cast_like(xp.asarray(mask)[..., None], like)


def _sig_xp(xp, z):
    return 0.5 * xp.tanh(0.5 * z) + 0.5  # σ(z) = ½(1 + tanh(z/2)): no overflow for any z


def _sig(z):
    """σ(z) = ½(1 + tanh(z/2)) with the library's tanh: the same function as ``sigmoid``,
    stable for any z, and several times faster than its exp(−softplus(−z)) on large arrays."""
    return 0.5 * tanh(0.5 * z) + 0.5


@primitive
class RnnScan(Function):
    """Elman recurrence over T steps: xs (T, B, H) projected inputs, h₀ (B, H), W (H, H).

    Forward:  h_t = φ(x_t + h_{t−1} Wᵀ),  t = 1..T,  φ = tanh or relu;  returns (h₁..h_T)
    VJP:      a_t = (h̄_t + a_{t+1} W) ⊙ φ′_t,  x̄_t = a_t,  h̄₀ = a₁ W,  W̄ = Σ_t a_tᵀ h_{t−1}
    JVP:      ḣ_t = φ′_t ⊙ (ẋ_t + ḣ_{t−1} Wᵀ + h_{t−1} Ẇᵀ),  ḣ₀ given

    φ′ = 1 − h_t² for tanh; for relu φ′ = 1 where h_t > 0 and 0 elsewhere (relu′(0) = 0).
    """

    @staticmethod
    def forward(xp, xs, h0, w, *, nonlinearity="tanh", mask=None):
        mask = None if mask is None else xp.asarray(mask)
        hs = xp.empty(xs.shape, dtype=xs.dtype)
        wt = xp.ascontiguousarray(w.T)
        h = h0
        for t in range(xs.shape[0]):
            a = xs[t] + h @ wt
            hn = xp.tanh(a, out=a) if nonlinearity == "tanh" else xp.maximum(a, 0, out=a)
            if mask is not None:
                hn = xp.where(mask[t][:, None], hn, h)
            hs[t] = hn
            h = hn
        return hs

    @staticmethod
    def _dphi(hs, nonlinearity):
        return 1 - hs * hs if nonlinearity == "tanh" else cast_like(hs > 0, hs)

    @staticmethod
    def vjp(g, y, xs, h0, w, *, nonlinearity="tanh", mask=None, needs):
        d = RnnScan._dphi(y, nonlinearity)
        m = _mask_f(mask, y)
        gas = [None] * y.shape[0]
        gh = None
        for t in range(y.shape[0] - 1, -1, -1):
            gt = g[t] if gh is None else g[t] + gh
            if m is None:
                a = gt * d[t]
                gh = a @ w
            else:
                a = gt * (d[t] * m[t])
                gh = a @ w + gt * (1 - m[t])
            gas[t] = a
        ga = stack(gas, axis=0)
        gw = _rows(ga).mT @ _rows(_previous(h0, y)) if needs[2] else None
        return ga, gh, gw

    @staticmethod
    def jvp(dxs, y, xs, h0, w, *, nonlinearity="tanh", mask=None):
        dx, dh0, dw = dxs
        d = RnnScan._dphi(y, nonlinearity)
        m = _mask_f(mask, y)
        q = dx
        if dw is not None:
            t2 = _mm_steps(_previous(h0, y), dw)
            q = t2 if q is None else q + t2
        dh = dh0
        out = []
        for t in range(y.shape[0]):
            a = q[t] if q is not None else None
            if dh is not None:
                r = dh @ w.mT
                a = r if a is None else a + r
            if a is None:
                a = y[t] * 0
            dn = a * d[t]
            if m is not None:
                dn = dn * m[t] + (dh if dh is not None else dn * 0) * (1 - m[t])
            out.append(dn)
            dh = dn
        return stack(out, axis=0)


@public
def rnn_scan(xs, h0, w, nonlinearity="tanh", mask=None):
    """h_t = φ(x_t + h_{t−1} Wᵀ) for t = 1..T: xs (T, B, H) the projected inputs (x W_ihᵀ + b),
    h₀ (B, H), W (H, H); returns all states (T, B, H). ``mask`` (T, B) bool: false carries the
    state (padding). One fused node; see :class:`RnnScan`."""
    _check_scan("rnn_scan", xs, h0, w, 1, mask)
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_scan: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return RnnScan.apply(xs, h0, w, nonlinearity=nonlinearity, mask=mask)


@primitive
class LstmScan(Function):
    """LSTM recurrence over T steps: zs (T, B, 4H) projected inputs, h₀, c₀ (B, H), W (4H, H).

    Forward:  Gₜ = [i f g o] = [σ σ tanh σ](zₜ + hₜ₋₁Wᵀ),  cₜ = f⊙cₜ₋₁ + i⊙g,  hₜ = o⊙tanh cₜ
    VJP:      z̄ₜ = āₜ = ([c̃ₜ⊙g, c̃ₜ⊙cₜ₋₁, c̃ₜ⊙i, h̃ₜ⊙tanh cₜ] + Ḡₜ) ⊙ Dₜ,  W̄ = Σₜ āₜᵀhₜ₋₁
    JVP:      Ġₜ = Dₜ⊙(żₜ + ḣₜ₋₁Wᵀ + hₜ₋₁Ẇᵀ),ċₜ = ḟ⊙cₜ₋₁ + f⊙ċₜ₋₁ + i̇⊙g + i⊙ġ, ḣₜ = ȯ tanh cₜ + kₜċₜ

    Gates in the order i, f, g, o along the last axis of zs and W (as PyTorch). Returns
    (h₁..h_T, c₁..c_T, G₁..G_T): states (T, B, H) and the gate activations (T, B, 4H), which the
    rules reuse instead of recomputing them (the public :func:`lstm_scan` returns the states
    only). Dₜ = [i(1−i), f(1−f), 1−g², o(1−o)] (the gates' slopes), kₜ = o⊙(1 − tanh²cₜ) =
    ∂hₜ/∂cₜ. Backward, from t = T down to 1: h̃ₜ = h̄ₜ + āₜ₊₁W and c̃ₜ = c̄ₜ + c̃ₜ₊₁⊙fₜ₊₁ +
    h̃ₜ⊙kₜ are the total cotangents of hₜ and cₜ; h̄₀ = ā₁W, c̄₀ = c̃₁⊙f₁.
    """

    @staticmethod
    def _compiled(xp, zs, h0, c0, w, mask):
        """The compiled step kernels apply (devices/cpu_jit.lstm_forward / lstm_backward):
        float32 NumPy arrays, no mask."""
        return (mask is None and zs.dtype.char == "f" and h0.dtype == c0.dtype == zs.dtype
                and _jit.applies(xp, zs, w))

    @staticmethod
    def forward(xp, zs, h0, c0, w, *, mask=None):
        if LstmScan._compiled(xp, zs, h0, c0, w, mask):
            return _jit.lstm_forward(zs, h0, c0, w)
        mask = None if mask is None else xp.asarray(mask)
        T, B, H4 = zs.shape
        H = H4 // 4
        hs = xp.empty((T, B, H), dtype=zs.dtype)
        cs = xp.empty((T, B, H), dtype=zs.dtype)
        gates = xp.empty((T, B, H4), dtype=zs.dtype)
        # σ(a) = ½ tanh(a/2) + ½: halve the i, f, o pre-activations once (in W and zs) so that
        # one tanh per step covers all four gates
        half = xp.ones((H4, 1), dtype=w.dtype)
        half[:2 * H] = 0.5
        half[3 * H:] = 0.5
        wt = xp.ascontiguousarray((w * half).T)  # (small-M GEMMs: 1.2-1.5x faster than a view)
        zh = zs * half[:, 0]
        h, c = h0, c0
        for t in range(T):
            a = gates[t]
            xp.matmul(h, wt, out=a)
            a += zh[t]
            xp.tanh(a, out=a)
            g = a[:, 2 * H:3 * H].copy()
            a *= 0.5
            a += 0.5  # i, f, o = σ(·)
            a[:, 2 * H:3 * H] = g
            cn, hn = cs[t], hs[t]  # written in place
            xp.multiply(a[:, H:2 * H], c, out=cn)
            g *= a[:, :H]
            cn += g
            xp.tanh(cn, out=hn)
            hn *= a[:, 3 * H:]
            if mask is not None:
                mt = mask[t][:, None]
                hn[...] = xp.where(mt, hn, h)
                cn[...] = xp.where(mt, cn, c)
            h, c = hn, cn
        return hs, cs, gates

    @staticmethod
    def _split(gates):
        H = gates.shape[-1] // 4
        return (gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H],
                gates[..., 3 * H:])

    @staticmethod
    def vjp(gy, y, zs, h0, c0, w, *, mask=None, needs):
        ghs, gcs, gg = gy
        hs, cs, gates = y
        if not any(isinstance(v, Tensor) for v in (*gy, *y, zs, h0, c0, w)):
            return LstmScan._vjp_arrays(xp_of((zs,)), ghs, gcs, gg, hs, cs, gates, h0, c0, w,
                                        mask, needs)
        i, f, g, o = LstmScan._split(gates)
        hp = _previous(h0, hs)
        cp = _previous(c0, cs)
        tch = tanh(cs)
        k_h = o * (1 - tch * tch)  # ∂h_t/∂c_t
        d = concat([i * (1 - i), f * (1 - f), 1 - g * g, o * (1 - o)], axis=-1)
        p = concat([g, cp, i, tch], axis=-1) * d
        m = _mask_f(mask, hs)
        gas = [None] * hs.shape[0]
        gh = gc = None
        for t in range(hs.shape[0] - 1, -1, -1):
            ht = ghs[t] if gh is None else ghs[t] + gh
            ct = gcs[t] if gc is None else gcs[t] + gc
            if m is not None:
                keep = 1 - m[t]
                carry_h, carry_c = ht * keep, ct * keep
                ht, ct = ht * m[t], ct * m[t]
            ct = ct + ht * k_h[t]
            a = concat([ct, ct, ct, ht], axis=-1) * p[t] + gg[t] * d[t]
            gc = ct * f[t]
            gh = a @ w
            if m is not None:
                gc = gc + carry_c
                gh = gh + carry_h
            gas[t] = a
        ga = stack(gas, axis=0)
        gw = _rows(ga).mT @ _rows(hp) if needs[3] else None
        return ga, gh, gc, gw

    @staticmethod
    def _vjp_arrays(xp, ghs, gcs, gg, hs, cs, gates, h0, c0, w, mask, needs):
        """The VJP above on raw arrays (an ordinary backward pass): the same equations, written
        in place on preallocated buffers. Both paths are checked by the generic suite (first
        order runs this one; second order the Tensor path)."""
        T, B, H = hs.shape
        with_gates = bool(gg.any())  # the gates are rarely used downstream: skip zeros
        if not with_gates and LstmScan._compiled(xp, hs, h0, c0, w, mask):
            return _jit.lstm_backward(ghs, gcs, hs, cs, gates, h0, c0, w, needs[3])
        i, f, g, o = LstmScan._split(gates)
        tch = xp.tanh(cs)
        k_h = tch * tch
        xp.subtract(1, k_h, out=k_h)
        k_h *= o
        d = xp.empty((T, B, 4 * H), dtype=hs.dtype)
        xp.subtract(1, gates, out=d)
        d *= gates  # σ′ = σ(1 − σ) for i, f, o ...
        xp.multiply(g, g, out=d[..., 2 * H:3 * H])
        xp.subtract(1, d[..., 2 * H:3 * H], out=d[..., 2 * H:3 * H])  # ... tanh′ = 1 − g²
        p = xp.empty((T, B, 4 * H), dtype=hs.dtype)
        p[..., :H] = g
        p[0, :, H:2 * H] = c0
        p[1:, :, H:2 * H] = cs[:-1]
        p[..., 2 * H:3 * H] = i
        p[..., 3 * H:] = tch
        p *= d
        m = None if mask is None else xp.asarray(mask)[..., None].astype(hs.dtype)
        ga = xp.empty((T, B, 4 * H), dtype=hs.dtype)
        ga4 = ga.reshape(T, B, 4, H)
        p4 = p.reshape(T, B, 4, H)
        gh = xp.zeros((B, H), dtype=hs.dtype)
        gc = xp.zeros((B, H), dtype=hs.dtype)
        with_gcs = bool(gcs.any())  # c̄ₜ: zero unless the cell states are used downstream
        for t in range(T - 1, -1, -1):
            ht = ghs[t] + gh
            ct = gcs[t] + gc if with_gcs else gc.copy()
            if m is not None:
                keep = 1 - m[t]
                carry_h, carry_c = ht * keep, ct * keep
                ht *= m[t]
                ct *= m[t]
            ct += ht * k_h[t]
            xp.multiply(p4[t, :, :3], ct[:, None, :], out=ga4[t, :, :3])
            xp.multiply(p4[t, :, 3], ht, out=ga4[t, :, 3])
            if with_gates:
                ga[t] += gg[t] * d[t]
            gc = ct * f[t]
            gh = ga[t] @ w
            if m is not None:
                gc += carry_c
                gh += carry_h
        gw = None
        if needs[3]:  # W̄ = Σₜ āₜᵀ hₜ₋₁, with h₀ for t = 1 (no concatenated copy of the states)
            gw = ga[0].T @ h0
            if T > 1:
                gw += ga[1:].reshape((T - 1) * B, 4 * H).T @ hs[:-1].reshape((T - 1) * B, H)
        return ga, gh, gc, gw

    @staticmethod
    def jvp(dxs, y, zs, h0, c0, w, *, mask=None):
        dz, dh0, dc0, dw = dxs
        hs, cs, gates = y
        H = h0.shape[-1]
        i, f, g, o = LstmScan._split(gates)
        hp = _previous(h0, hs)
        cp = _previous(c0, cs)
        tch = tanh(cs)
        dgate = concat([i * (1 - i), f * (1 - f), 1 - g * g, o * (1 - o)], axis=-1)
        k_h = o * (1 - tch * tch)
        m = _mask_f(mask, hs)
        q = dz
        if dw is not None:
            t2 = _mm_steps(hp, dw)
            q = t2 if q is None else q + t2
        dh, dc = dh0, dc0
        dhs, dcs, dgs = [], [], []
        for t in range(hs.shape[0]):
            a = q[t] if q is not None else None
            if dh is not None:
                r = dh @ w.mT
                a = r if a is None else a + r
            if a is None:
                a = dgate[t] * 0
            a = a * dgate[t]
            di, df, dg, do = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
            cn = df * cp[t] + di * g[t] + i[t] * dg
            if dc is not None:
                cn = cn + f[t] * dc
            hn = do * tch[t] + k_h[t] * cn
            if m is not None:
                keep = 1 - m[t]
                hn = hn * m[t] + (dh * keep if dh is not None else 0 * hn)
                cn = cn * m[t] + (dc * keep if dc is not None else 0 * cn)
            dhs.append(hn)
            dcs.append(cn)
            dgs.append(a)
            dh, dc = hn, cn
        return stack(dhs, axis=0), stack(dcs, axis=0), stack(dgs, axis=0)


@public
def lstm_scan(zs, h0, c0, w, mask=None):
    """The LSTM recurrence over zs (T, B, 4H) = x W_ihᵀ + b (gates i, f, g, o), h₀, c₀ (B, H)
    and W_hh (4H, H); returns (hs, cs), each (T, B, H). One fused node; see :class:`LstmScan`
    (which also returns the gate activations)."""
    _check_scan("lstm_scan", zs, h0, w, 4, mask)
    if shape_of(c0) != shape_of(h0):
        raise ValueError(f"lstm_scan: c0 must have h0's shape {shape_of(h0)}, got {shape_of(c0)}")
    hs, cs, _ = LstmScan.apply(zs, h0, c0, w, mask=mask)
    return hs, cs


@primitive
class GruScan(Function):
    """GRU recurrence over T steps: xs (T, B, 3H) projected inputs, h₀ (B, H), W (3H, H), b (3H,).

    Forward:  aₜ = hₜ₋₁Wᵀ + b,  hₜ = (1−u)⊙n + u⊙hₜ₋₁   (gates below)
    VJP:      x̄ₜ = [n̄⊙a_n⊙r(1−r), h̃ₜ⊙(hₜ₋₁−n)⊙u(1−u), n̄],  āₜ = x̄ₜ⊙[1, 1, r],  W̄ = Σₜ āₜᵀhₜ₋₁
    JVP:      ȧ = ḣₜ₋₁Wᵀ + hₜ₋₁Ẇᵀ + ḃ,  ḣₜ = (1−u)⊙ṅ + u⊙ḣₜ₋₁ + u̇⊙(hₜ₋₁−n)

    Gates: r = σ(x_r + a_r) (reset), u = σ(x_u + a_u) (update, PyTorch's z), n = tanh(x_n +
    r⊙a_n), in the order r, u, n along the last axis (as PyTorch); b is b_hh, inside the reset
    product. Backward: h̃ₜ = h̄ₜ + āₜ₊₁W + h̃ₜ₊₁⊙uₜ₊₁ (the total cotangent of hₜ),
    n̄ = h̃ₜ⊙(1−u)(1−n²), b̄ = Σₜ āₜ, h̄₀ = ā₁W + h̃₁⊙u₁. Tangents: ṙ = r(1−r)(ẋ_r + ȧ_r),
    u̇ = u(1−u)(ẋ_u + ȧ_u), ṅ = (1−n²)(ẋ_n + ṙ⊙a_n + r⊙ȧ_n). Returns h₁..h_T (T, B, H).
    """

    @staticmethod
    def _compiled(xp, xs, h0, w, b, mask):
        """The compiled step kernels apply (devices/cpu_jit.gru_forward / gru_backward):
        float32 NumPy arrays, no mask."""
        return (mask is None and xs.dtype.char == "f" and h0.dtype == xs.dtype
                and _jit.applies(xp, xs, w, b))

    @staticmethod
    def forward(xp, xs, h0, w, b, *, mask=None):
        if GruScan._compiled(xp, xs, h0, w, b, mask):
            return _jit.gru_forward(xs, h0, w, b)
        mask = None if mask is None else xp.asarray(mask)
        T, B, H3 = xs.shape
        H = H3 // 3
        hs = xp.empty((T, B, H), dtype=xs.dtype)
        wt = xp.ascontiguousarray(w.T)
        h = h0
        for t in range(T):
            a = h @ wt
            a += b
            x = xs[t]
            ru = _sig_xp(xp, x[:, :2 * H] + a[:, :2 * H])
            n = ru[:, :H] * a[:, 2 * H:]
            n += x[:, 2 * H:]
            xp.tanh(n, out=n)
            u = ru[:, H:]
            hn = h - n
            hn *= u
            hn += n
            if mask is not None:
                hn = xp.where(mask[t][:, None], hn, h)
            hs[t] = hn
            h = hn
        return hs

    @staticmethod
    def _gates(xs, h0, w, b, hs):
        H = h0.shape[-1]
        hp = _previous(h0, hs)
        a = _mm_steps(hp, w) + b
        ru = _sig(xs[..., :2 * H] + a[..., :2 * H])
        r, u = ru[..., :H], ru[..., H:]
        an = a[..., 2 * H:]
        n = tanh(xs[..., 2 * H:] + r * an)
        return hp, r, u, n, an

    @staticmethod
    def vjp(gy, y, xs, h0, w, b, *, mask=None, needs):
        if not any(isinstance(v, Tensor) for v in (gy, y, xs, h0, w, b)) \
                and gy.dtype == xs.dtype and GruScan._compiled(xp_of((xs,)), xs, h0, w, b, mask):
            return _jit.gru_backward(gy, xs, h0, w, b, y, needs)
        hp, r, u, n, an = GruScan._gates(xs, h0, w, b, y)
        pn = (1 - u) * (1 - n * n)
        px = concat([pn * an * r * (1 - r), (hp - n) * u * (1 - u), pn], axis=-1)
        pa = concat([px[..., :-n.shape[-1]], pn * r], axis=-1)
        m = _mask_f(mask, y)
        gxs, gas = [None] * y.shape[0], [None] * y.shape[0]
        gh = None
        for t in range(y.shape[0] - 1, -1, -1):
            ht = gy[t] if gh is None else gy[t] + gh
            if m is not None:
                carry = ht * (1 - m[t])
                ht = ht * m[t]
            h3 = concat([ht, ht, ht], axis=-1)
            gx = h3 * px[t]
            ga = h3 * pa[t]
            gh = ga @ w + ht * u[t]
            if m is not None:
                gh = gh + carry
            gxs[t], gas[t] = gx, ga
        ga = stack(gas, axis=0)
        gw = _rows(ga).mT @ _rows(hp) if needs[2] else None
        gb = _rows(ga).sum(axis=0) if needs[3] else None
        return stack(gxs, axis=0), gh, gw, gb

    @staticmethod
    def jvp(dxs, y, xs, h0, w, b, *, mask=None):
        dx, dh0, dw, db = dxs
        H = h0.shape[-1]
        hp, r, u, n, an = GruScan._gates(xs, h0, w, b, y)
        m = _mask_f(mask, y)
        q = None
        if dw is not None:
            q = _mm_steps(hp, dw)
        if db is not None:
            q = (hp[..., :1] * 0 + db) if q is None else q + db
        dh = dh0
        out = []
        for t in range(y.shape[0]):
            da = q[t] if q is not None else None
            if dh is not None:
                s = dh @ w.mT
                da = s if da is None else da + s
            if da is None:
                da = concat([hp[t]] * 3, axis=-1) * 0
            pre = da if dx is None else da + dx[t]
            dr = r[t] * (1 - r[t]) * pre[:, :H]
            du = u[t] * (1 - u[t]) * pre[:, H:2 * H]
            nx = r[t] * da[:, 2 * H:] + dr * an[t]
            if dx is not None:
                nx = nx + dx[t][:, 2 * H:]
            dn = (1 - n[t] * n[t]) * nx
            hn = (1 - u[t]) * dn + du * (hp[t] - n[t])
            if dh is not None:
                hn = hn + u[t] * dh
            if m is not None:
                hn = hn * m[t] + (dh * (1 - m[t]) if dh is not None else 0 * hn)
            out.append(hn)
            dh = hn
        return stack(out, axis=0)


@public
def gru_scan(xs, h0, w, b, mask=None):
    """The GRU recurrence over xs (T, B, 3H) = x W_ihᵀ + b_ih (gates r, u, n), h₀ (B, H),
    W_hh (3H, H) and b_hh (3H,); returns all states (T, B, H). See :class:`GruScan`."""
    _check_scan("gru_scan", xs, h0, w, 3, mask)
    if shape_of(b) != (shape_of(w)[0],):
        raise ValueError(f"gru_scan: b must have shape ({shape_of(w)[0]},), got {shape_of(b)}")
    return GruScan.apply(xs, h0, w, b, mask=mask)


def _check_scan(who, xs, h0, w, k, mask):
    sx, sh, sw = shape_of(xs), shape_of(h0), shape_of(w)
    if len(sh) != 2:
        raise ValueError(f"{who}: h0 must be (B, H), got shape {sh}")
    B, H = sh
    if len(sx) != 3 or sx[1:] != (B, k * H):
        raise ValueError(f"{who}: inputs must be (T, {B}, {k * H}) for h0 of shape {sh}, "
                         f"got {sx}")
    if sx[0] == 0:
        raise ValueError(f"{who}: the sequence is empty (T = 0)")
    if sw != (k * H, H):
        raise ValueError(f"{who}: W_hh must be ({k * H}, {H}), got {sw}")
    if mask is not None and tuple(mask.shape) != sx[:2]:
        raise ValueError(f"{who}: mask must be (T, B) = {sx[:2]}, got {tuple(mask.shape)}")
