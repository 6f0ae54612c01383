"""Problems from a Hugging Face dataset through ``datasets.load_dataset``, with presets for GSM8K and MATH.

The rows go through the same ``problem_from_row`` as local files, so a field mapping means the same thing
wherever the data lives. ``dataset`` may also be a local data file or folder (the Hub layout read offline, or a
test's fixture): files are read with the ``json``/``parquet`` builders, folders as ``load_dataset(folder)`` would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amc.config import AnswerFormat, FieldMap, HubSource
from amc.errors import ConfigError, InputError
from amc.records import Problem
from amc.sources.local import RowPlace, check_unique_ids, problem_from_row, warn_unmapped_id

_BUILDERS = {".jsonl": "json", ".json": "json", ".ndjson": "json", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class Preset:
    """Defaults for a well-known dataset; anything the user sets in the source config wins."""

    dataset: str
    name: str | None


PRESETS: dict[str, Preset] = {
    "gsm8k": Preset(dataset="openai/gsm8k", name="main"),
    # hendrycks/competition_math is gone from the Hub; this mirror keeps its fields (problem, solution, level, type)
    "math": Preset(dataset="DigitalLearningGmbH/MATH-lighteval", name=None),
}


def preset_fields(preset: str, columns: list[str]) -> tuple[FieldMap, AnswerFormat]:
    """The field mapping and answer format a preset uses for a dataset with these columns.

    MATH copies differ: the original keeps its answer only in the solution's last ``\\boxed{}`` and calls the
    subject ``type``; MATH-500 adds a clean ``answer`` column and calls it ``subject``. A ready answer column is
    preferred, because it is the curated answer rather than one re-extracted from LaTeX.
    """
    if preset == "gsm8k":
        return FieldMap(question="question", answer="answer"), "gsm8k"
    if preset == "math":
        subject = "subject" if "subject" in columns else ("type" if "type" in columns else None)
        level = "level" if "level" in columns else None
        answer = "answer" if "answer" in columns else None
        fields = FieldMap(question="problem", answer=answer, solution="solution", subject=subject, difficulty=level)
        return fields, "plain" if answer else "boxed"
    return FieldMap(), "plain"


def _load(dataset: str, name: str | None, split: str, revision: str | None) -> Any:
    """One split as a ``datasets.Dataset``; ``revision`` only applies to Hub ids (a local path has none)."""
    import datasets  # imported here: loading it costs a second, and only Hub sources need it

    local = Path(dataset)
    try:
        if local.is_file():
            builder = _BUILDERS.get(local.suffix.lower())
            if builder is None:
                raise InputError(dataset, None, None, f"cannot tell the format from suffix '{local.suffix}'")
            # Keyed by the configured split, so split='test' names the one file instead of the builder's 'train'.
            return datasets.load_dataset(builder, name, data_files={split: str(local)}, split=split)
        if local.is_dir():
            return datasets.load_dataset(str(local), name, split=split)
        return datasets.load_dataset(dataset, name, split=split, revision=revision)
    except InputError:
        raise
    except Exception as exc:  # datasets raises many types (offline, missing split, bad config); name the source
        raise InputError(dataset, None, None, f"cannot load split '{split}': {exc}") from exc


def _id_prefix(cfg: HubSource, dataset: str) -> str:
    """'gsm8k' for a preset, else the dataset's last path part without suffix, so ids read like 'gsm8k-test-00017'."""
    base = cfg.preset if cfg.preset != "custom" else Path(dataset.rstrip("/")).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base) or "hub"


def load_hub_problems(cfg: HubSource) -> list[Problem]:
    """Load a Hub dataset split (or a local file/folder in the Hub layout) into problems.

    Ids are the mapped id field, else ``<preset or dataset>-<split>-<index:05d>``; ``Problem.source`` is the
    dataset id as configured.

    >>> load_hub_problems(HubSource(preset="gsm8k"))[0].answer  # doctest: +SKIP
    '18'
    """
    preset = PRESETS.get(cfg.preset)
    dataset = cfg.dataset or (preset.dataset if preset else None)
    if dataset is None:
        raise ConfigError("<config>", "source.dataset", "a custom Hub source needs a dataset id or path")
    # The preset's config name belongs to the preset's own dataset; a local copy or a mirror has its own.
    name = cfg.name if cfg.name is not None else (preset.name if preset and cfg.dataset is None else None)
    data = _load(dataset, name, cfg.split, cfg.revision)
    if cfg.limit is not None:
        data = data.select(range(min(cfg.limit, len(data))))
    default_fields, default_format = preset_fields(cfg.preset, list(data.column_names))
    fields = cfg.fields or default_fields
    answer_format = cfg.answer_format or default_format
    prefix = f"{_id_prefix(cfg, dataset)}-{cfg.split}"
    warn_unmapped_id(list(data.column_names), fields, f"{dataset} ({cfg.split})", f"{prefix}-00000")
    problems: list[Problem] = []
    places: list[RowPlace] = []
    for index, row in enumerate(data):
        place = RowPlace(dataset, index, f"0-based index in split '{cfg.split}'")
        problems.append(
            problem_from_row(
                row,
                fields=fields,
                answer_format=answer_format,
                default_id=f"{prefix}-{index:05d}",
                source=dataset,
                place=place,
            )
        )
        places.append(place)
    check_unique_ids(problems, places, fields)
    return problems
