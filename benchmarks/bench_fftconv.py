"""Direct (unfold + GEMM) vs FFT convolution in tensorcalc, across kernel sizes 3..15.

Same function, two algorithms (functional.conv2d vs functional.conv2d_fft, 'same' padding,
stride 1): forward alone and forward + backward (gradients for input and weight), float32.
Direct costs O(N·O·C·H·W·k²) multiply-adds, FFT O(N·C·S log S + S·N·C·O) with S the padded
image size, independent of k: the FFT wins from some kernel size on. No PyTorch needed.

Run:  .venv/bin/python benchmarks/bench_fftconv.py [--quick] [--size 32] [--channels 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402

import tensorcalc as tc  # noqa: E402
import tensorcalc.functional as F  # noqa: E402


def case(n, c, o, size, k, rng):
    x = tc.tensor(rng.standard_normal((n, c, size, size)).astype(np.float32), requires_grad=True)
    w = tc.tensor(rng.standard_normal((o, c, k, k)).astype(np.float32) / (c * k * k) ** 0.5,
                  requires_grad=True)

    def fwd(f):
        def run():
            with tc.no_grad():
                f(x, w, padding="same")
        return run

    def fwd_bwd(f):
        def run():
            f(x, w, padding="same").sum().backward()
            x.grad = w.grad = None
        return run

    err = np.abs(F.conv2d_fft(x, w, padding="same").numpy()
                 - F.conv2d(x, w, padding="same").numpy()).max()
    return fwd, fwd_bwd, err


def main():
    ap = common.add_common_args(argparse.ArgumentParser(description=__doc__))
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    common.set_threads(args.threads)
    rng = np.random.default_rng(0)
    rep = 5 if args.quick else 15
    n, c, size = args.batch, args.channels, args.size
    print(f"conv2d 'same', N={n}, C=O={c}, {size}x{size}, float32; median ms per call")
    print(f"{'k':>3} | {'direct fwd':>10} {'fft fwd':>9} {'winner':>7} | {'direct f+b':>10} "
          f"{'fft f+b':>9} {'winner':>7} | max|diff|")
    rows, lines = [], []
    for k in range(3, 16, 2):
        fwd, fb, err = case(n, c, c, size, k, rng)
        s1 = common.compare({"direct": fwd(F.conv2d), "fft": fwd(F.conv2d_fft)}, repeat=rep,
                            target_s=0.05)
        s2 = common.compare({"direct": fb(F.conv2d), "fft": fb(F.conv2d_fft)}, repeat=rep,
                            target_s=0.05)
        d1, f1, d2, f2 = (s1["direct"].median, s1["fft"].median, s2["direct"].median,
                          s2["fft"].median)
        w1 = "fft" if f1 < d1 else "direct"
        w2 = "fft" if f2 < d2 else "direct"
        line = (f"{k:>3} | {d1 * 1e3:10.3f} {f1 * 1e3:9.3f} {w1:>7} | {d2 * 1e3:10.3f} "
                f"{f2 * 1e3:9.3f} {w2:>7} | {err:.1e}")
        print(line)
        lines.append(f"| {k} | {d1 * 1e3:.3f} | {f1 * 1e3:.3f} | {w1} | {d2 * 1e3:.3f} | "
                     f"{f2 * 1e3:.3f} | {w2} |")
        rows.append((k, d1, f1, d2, f2))
    first = next((k for k, d1, f1, _, _ in rows if f1 < d1), None)
    first_fb = next((k for k, _, _, d2, f2 in rows if f2 < d2), None)
    summary = (f"FFT wins from k = {first} (forward) and k = {first_fb} (forward + backward); "
               "direct wins below." if first else "direct wins at every kernel size tried")
    print(summary)
    if args.write:
        body = "\n".join([
            "## Direct vs FFT convolution (issue 5)", "",
            f"Run {common.stamp()} with `benchmarks/bench_fftconv.py`: conv2d 'same', N={n}, "
            f"C=O={c}, {size}x{size}, float32, median ms per call.", "",
            common.machine_md(common.machine_info()), "",
            "| k | direct fwd | FFT fwd | winner | direct fwd+bwd | FFT fwd+bwd | winner |",
            "|---|---|---|---|---|---|---|", *lines, "", summary, "",
        ])
        common.write_section("fftconv", body)


if __name__ == "__main__":
    main()
