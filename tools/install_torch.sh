#!/bin/sh
# Install PyTorch into the environment of the interpreter given as $1, before the project's own
# install, so that pip never resolves `torch` to a multi-GB CUDA build on a machine without a GPU.
#   * torch already importable  -> nothing to do (your own build is kept);
#   * an NVIDIA GPU is present  -> plain `pip install torch` (the default CUDA build);
#   * no GPU, a local CPU wheel -> `pip install torch==2.13.0`, which pip takes from the local
#                                  wheel directory configured for pip (find-links);
#   * no GPU, no local wheel    -> the CPU-only wheel index of the PyTorch project.
# Override with TORCH_SPEC, e.g. TORCH_SPEC="torch==2.5.1" make test.
set -eu
py="$1"
if "$py" -c "import torch" >/dev/null 2>&1; then
    exit 0
fi
if [ -n "${TORCH_SPEC:-}" ]; then
    exec "$py" -m pip install --quiet "$TORCH_SPEC"
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "install_torch: GPU found, installing the default PyTorch build"
    exec "$py" -m pip install --quiet torch
fi
if "$py" -m pip install --dry-run --no-index --no-deps "torch==2.13.0" 2>/dev/null | grep -q '+cpu'; then
    echo "install_torch: no GPU, installing the local CPU wheel torch==2.13.0"
    exec "$py" -m pip install --quiet "torch==2.13.0"
fi
echo "install_torch: no GPU, installing PyTorch from its CPU-only wheel index"
exec "$py" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
