#!/usr/bin/env bash
# The GPU verification in one command (a few minutes): the device test subset on CUDA (the op
# table, modules, optimisers, loaders, checkpoints, the Loop and the CLI — the same tests CI runs
# on the stand-in), a short `tensorcalc train mlp|lenet --device cuda`, and the GPU benchmarks
# side by side with PyTorch CUDA (benchmarks/gpu/bench_gpu.py). Output goes to $OUT.
#
#   benchmarks/gpu/run.sh            (from the repository root, on a machine with a GPU)
#
# What it needs: numpy, scipy, safetensors, pytest, cupy (the wheel matching the CUDA driver,
# e.g. cupy-cuda12x / cupy-cuda13x: `pip install 'tensorcalc[gpu]'` installs cupy-cuda12x) and
# torch with CUDA for the comparison. It installs what is missing when pip can reach an index;
# wheels placed in .whl/ (e.g. tensorboardX) are installed offline first.
set -u
OUT=${OUT:-benchmarks/gpu/out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/tc_site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/tc_site"
fi
for mod in cupy:cupy-cuda12x torch:torch safetensors:safetensors scipy:scipy pytest:pytest; do
  $PY -c "import ${mod%%:*}" 2>/dev/null || $PY -m pip install -q "${mod#*:}" || true
done
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import sys, numpy, cupy, torch; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__, 'torch', torch.__version__, 'cuda runtime', cupy.cuda.runtime.runtimeGetVersion())"
} 2>&1 | tee "$OUT/machine.txt"

echo "== device tests (standin + cuda) =="
timeout 240 $PY -m pytest tests/devices -q -p no:cacheprovider -x --tb=short 2>&1 \
  | tee "$OUT/tests.txt" | tail -25

echo "== tensorcalc train mlp --device cuda =="
CLI="from tensorcalc.cli import main; raise SystemExit(main())"
( time timeout 120 $PY -c "$CLI" train mlp --device cuda --epochs 3 --out /tmp/tc_mlp \
    --no-report ) 2>&1 | tee "$OUT/train.txt"
echo "== tensorcalc train lenet --device cuda =="
( time timeout 120 $PY -c "$CLI" train lenet --device cuda --epochs 1 --out /tmp/tc_lenet \
    --no-report ) 2>&1 | tee -a "$OUT/train.txt"
echo "== evaluate the GPU-trained run on the CPU (device-independent checkpoint) =="
timeout 60 $PY -c "$CLI" evaluate /tmp/tc_mlp 2>&1 | tee -a "$OUT/train.txt"

echo "== benchmarks: tensorcalc (CuPy) vs torch CUDA =="
timeout 200 $PY benchmarks/gpu/bench_gpu.py --out "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
