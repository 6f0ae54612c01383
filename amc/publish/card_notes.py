"""What a dataset card must say plainly: which roles ran on the ``sim`` stand-in, a strong class skew in the kept
rows, why ``sft_refine`` is smaller than ``filtered``, which public dataset a local source copies, and the config
as written (with the few resolved values that matter) rather than every default.

Everything here is a pure function of the config and the run: no machine path reaches the card.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from amc.config import FileSource, HubSource, PipelineConfig, SyntheticSource
from amc.redact import redact

if TYPE_CHECKING:
    from amc.publish.exports import RunData

# Public datasets recognised by a folder or file name of a local copy (checked in order: MATH-500 before MATH).
KNOWN_DATASETS = (
    (("math500", "math-500", "math_500"), "HuggingFaceH4/MATH-500"),
    (("gsm8k",), "openai/gsm8k"),
    (("competition_math", "math-lighteval", "math"), "DigitalLearningGmbH/MATH-lighteval"),
)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet", ".pq", ".csv", ".ndjson", ".arrow")
SKEW_RATIO = 10
SKEW_MIN = 20


# ----------------------------------------------------------------------------------------------- sources
def is_local(location: str) -> bool:
    """True for a path (absolute, relative, home, or a data file), False for a Hub id ``ORG/NAME``."""
    if location.startswith(("/", ".", "~")) or location.lower().endswith(_DATA_SUFFIXES) or "\\" in location:
        return True
    return not _HUB_ID.fullmatch(location)


def named_dataset(location: str, preset: str | None = None) -> str | None:
    """The public dataset a source reads: a Hub id as is; a local copy by its preset, else by a known name in its
    path (``.../gsm8k/test.jsonl`` -> ``openai/gsm8k``); None when it cannot be told."""
    from amc.sources.hub import PRESETS

    if not is_local(location):
        return location
    if preset in PRESETS:
        return PRESETS[preset].dataset
    parts = [p.lower() for p in PurePosixPath(location.replace("\\", "/")).parts]
    stems = {p.rsplit(".", 1)[0] for p in parts} | set(parts)
    for names, dataset in KNOWN_DATASETS:
        if stems & set(names):
            return dataset
    return None


def public_location(location: str, preset: str | None = None) -> str:
    """A source location fit for a card: a Hub id as is; a local path as the file name and what it copies."""
    if not is_local(location):
        return location
    name = PurePosixPath(location.replace("\\", "/")).name or location
    dataset = named_dataset(location, preset)
    return f"local copy of {dataset} ({name})" if dataset else f"local file ({name})"


def source_datasets(cfg: PipelineConfig) -> list[str]:
    """The card's ``source_datasets``: ``extended|<hub id>`` for a Hub dataset or a recognised local copy of one,
    ``original`` for synthetic problems and for a local file amc cannot name; never a local path."""
    from amc.sources.hub import PRESETS

    found: list[str] = []
    for src in cfg.sources:
        if isinstance(src, SyntheticSource):
            found.append("original")
        elif isinstance(src, HubSource):
            preset = PRESETS.get(src.preset)
            location = src.dataset or (preset.dataset if preset else None)
            dataset = named_dataset(location, src.preset) if location else None
            found.append(f"extended|{dataset}" if dataset else "original")
        elif isinstance(src, FileSource):
            dataset = named_dataset(src.path)
            found.append(f"extended|{dataset}" if dataset else "original")
    return list(dict.fromkeys(found))


def _public_source(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for key in ("path", "dataset"):
        if isinstance(out.get(key), str):
            out[key] = public_location(out[key], out.get("preset"))
    return out


def public_sources(cfg: PipelineConfig) -> list[dict[str, Any]]:
    """Each source as written in the pipeline file, local paths replaced by :func:`public_location`."""
    return redact([_public_source(s.model_dump(mode="json", exclude_unset=True)) for s in cfg.sources])


def public_config(cfg: PipelineConfig) -> dict[str, Any]:
    """The pipeline config as written (keys the file or ``--set`` gave, not every default), secrets removed, no
    run directory and no local source path: where files live on one machine is not provenance, and would make
    the card differ between machines."""
    data = cfg.model_dump(mode="json", exclude_unset=True)
    data.pop("run_dir", None)
    source = data.get("source")
    if isinstance(source, dict):
        data["source"] = _public_source(source)
    elif isinstance(source, list):
        data["source"] = [_public_source(s) if isinstance(s, dict) else s for s in source]
    return redact(data)


def resolved_values(cfg: PipelineConfig) -> dict[str, Any]:
    """The values that matter once defaults are applied: each role's engine and model, the sources, N and k."""
    st = cfg.stages
    roles = {"actor": cfg.models.actor, "annotator": cfg.models.annotator}
    if st.inject.enabled:
        roles["injector"] = cfg.models.for_role("injector")
    models = {role: f"{m.engine}: {m.model}" + (f"@{m.revision}" if m.revision else "") for role, m in roles.items()}
    for i, m in enumerate(st.sample.actors):
        models[f"sample actor {i}"] = f"{m.engine}: {m.model}"
    rules = [k for k, v in st.filter.rules.model_dump().items() if v is True]
    hints = [k for k, v in st.critique.hints.model_dump().items() if v is True]
    return redact(
        {
            "models": models,
            "sources": [_public_source(s.model_dump(mode="json")) for s in cfg.sources],
            "critique": {"format": st.critique.format, "hints": hints},
            "filter": {"N": st.filter.n, "k": st.filter.k, "rules": rules},
            "seed": cfg.seed,
        }
    )


# ----------------------------------------------------------------------------------------------- plain words
def sim_roles(cfg: PipelineConfig) -> list[str]:
    """Roles whose engine is amc's offline ``sim`` stand-in (not a model)."""
    roles = {"actor": cfg.models.actor, "annotator": cfg.models.annotator}
    if cfg.stages.inject.enabled:
        roles["injector"] = cfg.models.for_role("injector")
    out = [role for role, m in roles.items() if m.engine == "sim"]
    out += [f"sample actor {m.model}" for m in cfg.stages.sample.actors if m.engine == "sim"]
    return out


def plain_list(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def skew_text(wrong: int, correct: int, where: str = "kept critiques") -> str:
    """A plain warning when one final verdict outnumbers the other ``SKEW_RATIO`` to one; '' otherwise."""
    lo, hi = sorted((wrong, correct))
    if hi < SKEW_MIN or hi < SKEW_RATIO * max(lo, 1):
        return ""
    major = "wrong" if wrong > correct else "correct"
    return (
        f"Class skew: the {where} give the final verdict Wrong {wrong} times and Correct {correct} times, so a "
        f"critic trained on them as they are learns to call almost every answer {major}. Weight or subsample the "
        f"classes, or critique more {'correct' if major == 'wrong' else 'flawed'} paths "
        f"(`stages.critique.include_correct_paths`, `stages.inject`)."
    )


def kept_skew(run: RunData) -> str:
    """:func:`skew_text` for the filter's kept rows."""
    verdicts = [d.critique.final_verdict for d in run.kept]
    return skew_text(sum(v is False for v in verdicts), sum(v is True for v in verdicts))


def refine_gap(run: RunData, refine_rows: int) -> str:
    """Why ``sft_refine`` has fewer rows than ``filtered``, with the numbers of this run."""
    kept = len(run.kept)
    if not kept or refine_rows >= kept:
        return ""
    on_correct = sum(d.critique.path.correct for d in run.kept)
    no_target = kept - on_correct - refine_rows
    text = (
        f"`sft_refine` has {refine_rows} rows, {kept - refine_rows} fewer than `filtered`: it holds one example "
        f"per kept critique of a flawed path, with its first correct refinement as the target. {on_correct} kept "
        f"critiques judge a path that was already correct, so there is nothing to refine"
    )
    if no_target > 0:
        text += f", and {no_target} have no correct refinement that is more than a bare answer"
    return text + "."
