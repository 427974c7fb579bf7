#!/usr/bin/env bash
# On a machine with an NVIDIA GPU, in one go: install nbgrad with its CUDA extra, show what
# numba.cuda sees, run the CUDA checks on the real device (the same file CI runs under the
# simulator, nbgrad.compile's too; a host array passed to a kernel fails them), then the GPU
# benchmarks, eager and compiled.
#
#     bash benchmarks/gpu_check.sh                # all of it; benchmark results in benchmarks/results/gpu.json
#     bash benchmarks/gpu_check.sh --quick        # arguments go to benchmarks/gpu.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -m pip install -q -e ".[cuda,test]"
unset NUMBA_ENABLE_CUDASIM
"$PY" -m nbgrad info
# tiny test inputs make small grids: numba's occupancy warnings are expected there, not errors
NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0 "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/cuda_sim_checks.py \
    tests/cuda_sim_layer_checks.py tests/cuda_compile_checks.py
# products through cuBLAS (ops/targets/cuda_cublas.py) once CuPy is installed: the product checks again, on that path
if "$PY" -m pip install -q -e ".[cupy]"; then
    "$PY" -c "from nbgrad.ops.targets import cuda_cublas; print('cuBLAS path through CuPy:', cuda_cublas.ENABLED)"
    NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS=0 "$PY" -m pytest -q -p no:cacheprovider -rfEs tests/cuda_sim_checks.py \
        -k "matmul or mlp or adam"
fi
"$PY" -m benchmarks.gpu "$@"
# nbgrad.compile's (and torch.compile's) versions of the workloads that compile
"$PY" -m benchmarks.gpu --compiled --out benchmarks/results/gpu_compiled.json "$@"
