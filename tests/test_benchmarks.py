"""The benchmarks behind `make bench` run (at toy sizes), so they cannot rot unnoticed.

Their numbers are printed, never asserted: timings belong in notes, not in tests."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "bench_dmd": ["--n", "4000", "--t", "8", "--repeat", "1"],
    "bench_gram_blocks": ["--entries", "20000", "--t", "8", "64", "--repeat", "1"],
    "bench_recording": ["--model", "mlp", "--steps", "3", "--repeat", "1"],
    "bench_scale": ["--gb", "0.002", "--dist-gb", "0.002", "--T", "8"],
    "trust_families": ["--seeds", "1"],
    "kgp_fit": ["--seeds", "1"],
    "kgp_rounding": ["--seeds", "1", "--only", "heavy ball"],
    "kgp_curved": ["--dtypes", "float64", "--starts", "300"],
    "kgp_groups": ["--dtypes", "float64", "--starts", "300", "--seeds", "1"],
    "known_answers": [],
    "secant_limit": ["--seeds", "1"],
    "schedules": ["--seeds", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_benchmark_runs_at_a_toy_size(name, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *RUNS[name]],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.strip(), "prints its table"
