#!/usr/bin/env bash
# The checks that need a CUDA device, as one short run on a lent GPU machine (repository root):
#   bash benchmarks/device_check.sh [OUTDIR]
# 1. the tests marked gpu (skipped elsewhere): DMD, recording, masks, spectra and every estimate of
#    where training is heading, on cuda against the CPU and the known answers;
# 2. kt.dmd + fixed_point against one float64/float32 Gram pass on cuda (bench_dmd.py), both layouts;
# 3. the recorder's cost on cuda (bench_recording.py).
# Uses the machine's own python3 and torch; logs go to OUTDIR (default: the current folder). A machine
# without PyDMD (tests/test_dmd.py imports it) reads it from .device_pkgs/: copy .venv's pydmd there
# (listed in .git/info/exclude, so git ignores it) and carry that folder.
set -uo pipefail
out=${1:-.}
export PYTHONPATH=$PWD:$PWD/.device_pkgs PYTHONUNBUFFERED=1 OMP_NUM_THREADS=8
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_dmd.py tests/test_pruning.py tests/test_trajectory.py \
    tests/test_spectra.py tests/test_masks_inputs.py tests/test_gpu_estimates.py 2>&1 | tee "$out/gpu_tests.log"
for dtype in float32 float64; do
    python3 benchmarks/bench_dmd.py --n 4000000 --t 64 --device cuda --dtype $dtype --layout both --repeat 3 \
        --no-pydmd 2>&1 | tee -a "$out/bench_dmd_cuda.log"
done
python3 benchmarks/bench_recording.py --model mlp mnistnet --steps 100 --repeat 3 --device cuda 2>&1 \
    | tee "$out/bench_recording_cuda.log"
