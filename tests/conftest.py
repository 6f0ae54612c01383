"""Test isolation: no test reaches the network or the user's caches."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_TMP = Path(tempfile.mkdtemp(prefix="amc-tests-"))
os.environ["HF_HOME"] = str(_TMP / "hf_home")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TMPDIR", str(_TMP))
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["AMC_STRICT_PARSERS"] = "1"  # a crash of a critique parser fails the test instead of becoming a reject
# Named models (amc.models) build into this cache; CI points it at one folder per run so SmolLM2 converts once.
os.environ.setdefault("AMC_CACHE_DIR", str(_TMP / "amc_cache"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Real public data beside the checkout (../shared/data); tests read it, never copy it."""
    assert SHARED_DATA.is_dir(), f"expected the shared data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _cold_memos():
    """Every test starts with amc's per-text memos and function caches empty (step claims, number literals, the
    sim's helpers): a result one test computed never answers for another, so what a test checks is computed while
    it runs. (Mutation testing forks its runs from a process whose memos are warm: without this, a mutated
    function whose results were remembered was never called.)"""
    import sys

    for name, module in list(sys.modules.items()):
        if not name.startswith("amc") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if attr.endswith("_MEMO") and isinstance(value, dict):
                value.clear()
            elif callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                value.cache_clear()
    yield
