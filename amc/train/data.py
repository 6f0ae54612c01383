"""Where training rows come from: a run directory, a published folder, a Hub dataset id, or a Parquet/JSONL file.

Every source ends as TRL conversational ``prompt``/``completion`` rows (lists of ``{role, content}`` messages), so
the trainer trains on the completion only. A run directory is read directly (no ``amc publish`` needed): its kept
critiques become the same ``sft_critic``/``sft_refine`` rows a publication would hold, split by problem with the
same hash (:func:`amc.publish.split_of`), so a run and its publication train on the same examples. A file holds
rows of that format already (``amc selftrain`` writes them); a malformed row is named by file, row and field.

>>> data = load_sft_data("runs/quickstart", "sft_critic")  # doctest: +SKIP
>>> data.kind, len(data.train)  # doctest: +SKIP
('run', 142)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from amc.errors import AmcError

if TYPE_CHECKING:
    import datasets

SFT_CONFIGS = ("sft_critic", "sft_refine")
FILE_SUFFIXES = {".parquet": "parquet", ".jsonl": "json", ".json": "json"}
ROLES = ("system", "user", "assistant")
VERSION_FILE = "amc_version.json"  # written by amc.publish beside every published dataset

SourceKind = Literal["run", "folder", "hub", "file"]


class TrainError(AmcError):
    """Training cannot start: a dataset without prompt/completion, a model without a chat template, ..."""


class TrainDataError(TrainError):
    """Training data that cannot be read as prompt/completion rows; the message names the file, row and field."""


@dataclass
class SFTData:
    """Train (and optional test) prompt/completion rows, with where they came from."""

    train: datasets.Dataset
    test: datasets.Dataset | None
    kind: SourceKind
    identity: dict[str, Any] = field(default_factory=dict)


def source_kind(data: str | Path) -> SourceKind:
    """What ``data`` names: a run directory (stage folders with manifests), a published folder, a file, a Hub id.

    >>> source_kind("my-org/quickstart")
    'hub'
    """
    path = Path(data)
    if path.is_file():
        if path.suffix.lower() not in FILE_SUFFIXES:
            raise TrainDataError(f"{path}: training files are .parquet or .jsonl of prompt/completion rows")
        return "file"
    if path.is_dir():
        if (path / VERSION_FILE).is_file():
            return "folder"
        if any((path / stage / "manifest.json").is_file() for stage in ("filter", "critique", "sample", "problems")):
            return "run"
        if (path / "README.md").is_file():
            return "folder"  # a dataset folder written by something else; datasets.load_dataset reads it
        raise TrainDataError(f"{path}: neither a run directory (no stage manifests) nor a published dataset folder")
    text = str(data)
    if path.suffix.lower() in FILE_SUFFIXES:
        raise TrainDataError(f"{path}: no such file")
    if text.startswith((".", "/", "~")) or not re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        raise TrainDataError(f"{text}: no such folder or file, and not a Hub dataset id (ORG/NAME)")
    return "hub"


def load_sft_data(
    data: str | Path,
    config: str = "sft_critic",
    *,
    revision: str | None = None,
    test_fraction: float = 0.1,
    eval: bool = True,
    include_correct_paths: bool = False,
    prompts_dir: str | None = None,
) -> SFTData:
    """Prompt/completion rows of ``config`` from any source; ``include_correct_paths`` adds the correct paths of
    the run or publication as solve examples (actor training). A file's rows are all train rows."""
    kind = source_kind(data)
    if kind == "file":
        if include_correct_paths:
            raise TrainDataError(f"{data}: include_correct_paths needs a run or a publication, not a file")
        return SFTData(
            train=read_prompt_completion_file(Path(data)), test=None, kind=kind, identity=_file_identity(Path(data))
        )
    if kind == "run":
        return _from_run(Path(data), config, test_fraction, eval, include_correct_paths, prompts_dir)
    return _from_publication(str(data), kind, config, revision, eval, include_correct_paths, prompts_dir)


# ----------------------------------------------------------------------------------------------- files
def read_prompt_completion_file(path: Path) -> datasets.Dataset:
    """A ``.parquet`` or ``.jsonl`` file of TRL conversational rows, each checked: ``prompt`` a non-empty list of
    messages, ``completion`` a non-empty list of assistant messages."""
    import datasets

    try:
        ds = datasets.load_dataset(FILE_SUFFIXES[path.suffix.lower()], data_files=str(path), split="train")
    except Exception as exc:  # a truncated Parquet file, a line of JSONL that is not JSON, ...
        raise TrainDataError(
            f"{path}: cannot be read as {path.suffix[1:]}: {' '.join(str(exc).split())[:300]}"
        ) from None
    missing = {"prompt", "completion"} - set(ds.column_names)
    if missing:
        raise TrainDataError(
            f"{path}: no {', '.join(sorted(missing))} column (columns: {', '.join(ds.column_names)}); "
            f"expected TRL conversational prompt/completion rows"
        )
    for i, row in enumerate(ds.select_columns(["prompt", "completion"])):
        for name in ("prompt", "completion"):
            problem = _message_list_problem(row[name], assistant_only=name == "completion")
            if problem:
                raise TrainDataError(f"{path}: row {i}: field '{name}': {problem}")
    if len(ds) == 0:
        raise TrainDataError(f"{path}: no rows")
    return ds.select_columns(["prompt", "completion"])


def _message_list_problem(value: Any, *, assistant_only: bool) -> str | None:
    if not isinstance(value, list) or not value:
        return f"expected a non-empty list of {{role, content}} messages, got {_short(value)}"
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            return f"message {j} is not a {{role: system|user|assistant, content: text}} message: {_short(m)}"
        if assistant_only and m["role"] != "assistant":
            return f"message {j} has role '{m['role']}'; a completion holds assistant messages only"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _file_identity(path: Path) -> dict[str, Any]:
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return {
        "source": str(path),
        "kind": "file",
        "config": None,
        "revision": None,
        "name": path.stem,
        "version": None,
        "fingerprint": digest,
    }


# ----------------------------------------------------------------------------------------------- publications
def _from_publication(
    data: str,
    kind: SourceKind,
    config: str,
    revision: str | None,
    eval: bool,
    include_correct_paths: bool,
    prompts_dir: str | None,
) -> SFTData:
    from amc.publish import load

    def split(name: str) -> datasets.Dataset | None:
        try:
            ds = _select(load(data, config, revision, split=name), data, config)
        except ValueError as exc:  # datasets: 'Unknown split "test"' when the publication has no test split
            if "split" not in str(exc).lower() or name == "train":
                raise TrainDataError(f"{data}: no '{config}' config with a {name} split: {exc}") from None
            return None
        if include_correct_paths:
            ds = _concat(ds, _solve_rows_of_publication(data, revision, name, prompts_dir))
        return ds if len(ds) else None

    train = split("train")
    if train is None:
        raise TrainDataError(f"{data} ({config}) has an empty train split")
    return SFTData(
        train=train,
        test=split("test") if eval else None,
        kind=kind,
        identity=publication_identity(data, config, revision, kind),
    )


def _select(ds: datasets.Dataset, data: str, config: str) -> datasets.Dataset:
    missing = {"prompt", "completion"} - set(ds.column_names)
    if missing:
        raise TrainDataError(
            f"{data} config '{config}' has no {', '.join(sorted(missing))} column; "
            f"train on sft_critic or sft_refine (TRL prompt/completion)"
        )
    return ds.select_columns(["prompt", "completion"])


def _solve_rows_of_publication(data: str, revision: str | None, split: str, prompts_dir: str | None) -> list[dict]:
    from amc.publish import load

    try:
        paths = load(data, "paths", revision, split=split)
    except ValueError:
        return []
    return solve_rows((r for r in paths if r["correct"] and r["strategy"] != "reference"), "solve", prompts_dir)


def publication_identity(data: str, config: str, revision: str | None, kind: SourceKind) -> dict[str, Any]:
    """Source, config, revision, and the publication's name, version and fingerprint from its ``amc_version.json``
    (a local folder's, or the Hub repository's at ``revision``; ``None`` fields when it cannot be read)."""
    ident: dict[str, Any] = {
        "source": data,
        "kind": kind,
        "config": config,
        "revision": revision,
        "name": None,
        "version": None,
        "fingerprint": None,
    }
    try:
        if kind == "folder":
            path = Path(data) / VERSION_FILE
        else:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(data, VERSION_FILE, repo_type="dataset", revision=revision))
        record = json.loads(path.read_text(encoding="utf-8"))
    except Exception:  # no version file (not an amc publication), offline, or a private repo without a token
        return ident
    ident.update({k: record.get(k) for k in ("name", "version", "fingerprint")})
    return ident


# ----------------------------------------------------------------------------------------------- run directories
def _stage_template(run_dir: Path, stage: str, default: str) -> str:
    try:
        manifest = json.loads((run_dir / stage / "manifest.json").read_text(encoding="utf-8"))
        return manifest["config"]["stage"]["template"] or default
    except (OSError, ValueError, KeyError, TypeError):
        return default


def _from_run(
    run_dir: Path, config: str, test_fraction: float, eval: bool, include_correct_paths: bool, prompts_dir: str | None
) -> SFTData:
    import datasets

    from amc.config import PipelineConfig
    from amc.publish.exports import SFT_SCHEMA, read_run, sft_critic_rows, sft_refine_rows, split_of

    if config not in SFT_CONFIGS:
        raise TrainDataError(f"{run_dir}: a run directory gives {' or '.join(SFT_CONFIGS)}, not '{config}'")
    from amc.engine.rundir import ManifestError, RunDir

    try:  # manifests are read through the run directory's one owner (a corrupt one is one clear line)
        status = (RunDir(run_dir).read_manifest("filter") or {}).get("status")
    except ManifestError as exc:
        raise TrainDataError(str(exc)) from None
    if status != "done":
        raise TrainDataError(
            f"{run_dir}: the filter stage is {'not finished' if status else 'missing'}; "
            f"run `amc build --stage filter` first"
        )
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run_dir.resolve().name) or "run"
    # Only what the exports read: the run directory, the templates the stages used and where templates live.
    cfg = PipelineConfig.model_validate(
        {
            "name": name,
            "run_dir": str(run_dir),
            "prompts_dir": prompts_dir,
            "stages": {"filter": {"template": _stage_template(run_dir, "filter", "refine")}},
        }
    )
    run = read_run(cfg)
    rows = (sft_critic_rows if config == "sft_critic" else sft_refine_rows)(run.kept, cfg)
    by_split: dict[str, list[dict]] = {"train": [], "test": []}
    for problem_id, row in rows:
        by_split[split_of(problem_id, test_fraction)].append({"prompt": row["prompt"], "completion": row["completion"]})
    if include_correct_paths:
        template = _stage_template(run_dir, "sample", "solve")
        for p in run.paths:
            if p.correct and p.strategy != "reference":
                by_split[split_of(p.problem_id, test_fraction)].extend(
                    solve_rows([p.model_dump()], template, prompts_dir)
                )
    schema = pa.schema([SFT_SCHEMA.field("prompt"), SFT_SCHEMA.field("completion")])
    tables = {s: datasets.Dataset(_arrow(r, schema)) for s, r in by_split.items() if r}
    if "train" not in tables:
        raise TrainDataError(f"{run_dir}: no {config} row in the train split (kept critiques: {len(run.kept)})")
    filter_manifest = run.manifests["filter"]
    identity = {
        "source": str(run_dir),
        "kind": "run",
        "config": config,
        "revision": None,
        "name": name,
        "version": None,
        "fingerprint": filter_manifest.get("fingerprint"),
        "test_fraction": test_fraction,
    }
    return SFTData(train=tables["train"], test=tables.get("test") if eval else None, kind="run", identity=identity)


def _arrow(rows: list[dict], schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


# ----------------------------------------------------------------------------------------------- shared
def solve_rows(paths: Any, template: str, prompts_dir: str | None) -> list[dict]:
    """Correct paths as actor examples: the solve prompt -> the path's steps, one per line."""
    from amc.prompts import load_template

    solve = load_template(template, prompts_dir)
    return [
        {
            "prompt": [{"role": m.role, "content": m.content} for m in solve.render(question=p["question"])],
            "completion": [{"role": "assistant", "content": "\n".join(p["steps"])}],
        }
        for p in paths
    ]


def _concat(ds: datasets.Dataset, rows: list[dict]) -> datasets.Dataset:
    import datasets

    if not rows:
        return ds
    extra = datasets.Dataset.from_list(rows).cast(ds.features)
    return datasets.concatenate_datasets([ds, extra])
