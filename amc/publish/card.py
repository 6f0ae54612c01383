"""The dataset card (README.md): YAML metadata the Hub reads, then provenance, funnel, distributions, a sample row
and the exact pipeline config with every secret removed, rendered from a Jinja template in ``data_cards/``.

The YAML block is written by code (``yaml.safe_dump``), never by the template, so that whatever a run contains
the metadata always parses. Nothing in the card depends on the time or the machine: the same run gives the same
card, and republishing an unchanged dataset is a no-op.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from typing import Any

import yaml
from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from amc import __version__
from amc.config import PipelineConfig, SyntheticSource
from amc.prompts import load_template
from amc.publish.card_notes import (
    kept_skew,
    plain_list,
    public_config,
    public_location,
    public_sources,
    refine_gap,
    resolved_values,
    sim_roles,
    source_datasets,
)
from amc.publish.exports import CONFIG_DESCRIPTIONS, ExportOptions, RunData
from amc.publish.plots import Distribution
from amc.redact import redact_text

CARDS_DIR = Path(__file__).resolve().parent.parent / "data_cards"
CARD_TEMPLATE = "dataset_card.md.jinja"
PAPER = "https://arxiv.org/abs/2411.16579"

FILTERED_FIELDS = {
    "question / reference_answer": "The problem and its reference final answer.",
    "steps / num_steps": "The reasoning path, one step per line, as judged.",
    "path_correct / predicted_answer": "Whether the path's final answer matches the reference (math-verify).",
    "strategy": (
        "How the path was made: sample (RG1), resample (RG2), inject (RG3, by a model), "
        "symbolic (RG3, no model), reference (the source's solution)."
    ),
    "error_step / error_type": "First wrong step (0-based) and error type when known by construction; "
    "-1 no error, null unknown.",
    "step_verdicts": "The annotator's verdict and explanation for each step.",
    "first_error_step": "First step the annotator judged Wrong (0-based; -1 when all are Correct).",
    "final_verdict / final_explanation": "The annotator's judgement of the final answer.",
    "critique": "The critique text, as written by the annotator.",
    "hints": "Which hints the annotator was given (never shown to a critic trained on `sft_critic`).",
    "n / k / n_correct": "Refinements sampled (N), needed (k) and reaching the reference answer.",
    "refinements": "The actor's refinements given the critique, graded.",
}


# ----------------------------------------------------------------------------------------------- metadata
def size_category(n: int) -> str:
    """The Hub's size bucket of a row count."""
    bounds = [
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
        (1_000_000_000, "100M<n<1B"),
    ]
    return next((label for bound, label in bounds if n < bound), "n>1T")


def card_metadata(cfg: PipelineConfig, options: ExportOptions, splits: dict[str, list[str]], rows: int) -> dict:
    """The YAML block: what the Hub indexes, and ``configs`` that tell ``datasets`` where each split's files are."""
    configs = []
    for i, (name, names) in enumerate(splits.items()):
        entry: dict[str, Any] = {
            "config_name": name,
            "data_files": [{"split": s, "path": f"{name}/{s}-*"} for s in names],
        }
        if i == 0:
            entry["default"] = True
        configs.append(entry)
    tags = ["math", "reasoning", "critique", "step-level", "process-supervision", "amc"]
    if any(isinstance(src, SyntheticSource) for src in cfg.sources):
        tags.append("synthetic")
    return {
        "pretty_name": options.pretty_name or cfg.name,
        "license": options.license,
        "language": ["en"],
        "task_categories": ["text-generation"],
        "size_categories": [size_category(rows)],
        "source_datasets": source_datasets(cfg),
        "tags": list(dict.fromkeys([*tags, *options.tags])),
        "configs": configs,
    }


# ----------------------------------------------------------------------------------------------- provenance
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def provenance(run: RunData) -> dict[str, Any]:
    """Models, sampling, prompt templates, verifier and toolkit versions, seeds, stage fingerprints."""
    cfg, st = run.cfg, run.cfg.stages
    roles = ["actor", "annotator"] + (["injector"] if "inject" in run.manifests and st.inject.enabled else [])
    models = []
    for role in roles:
        m = cfg.models.for_role(role)
        models.append(
            {"role": role, "engine": m.engine, "model": redact_text(m.model), "revision": m.revision or "(default)"}
        )
    sampling = {
        "sample": {"n": st.sample.n, **st.sample.sampling.model_dump()},
        "inject": {"per_problem": st.inject.per_problem, **st.inject.sampling.model_dump()},
        "critique": {"n": st.critique.n, **st.critique.sampling.model_dump()},
        "filter": {"N": st.filter.n, "k": st.filter.k, **st.filter.sampling.model_dump()},
    }
    templates = {name: m.get("templates", []) for name, m in run.manifests.items() if m.get("templates")}
    templates["export (sft_critic, sft_refine)"] = [
        load_template("critic", cfg.prompts_dir).ref,
        load_template(st.filter.template, cfg.prompts_dir).ref,
    ]
    seeds = {"run seed": cfg.seed}
    for src in cfg.sources:
        if isinstance(src, SyntheticSource):
            seeds["synthetic source seed"] = src.seed if src.seed is not None else cfg.seed
    return {
        "models": models,
        "sampling": sampling,
        "templates": templates,
        "seeds": seeds,
        "versions": {
            "amc": __version__,
            "math-verify (verifier)": _version("math-verify"),
            "pyarrow (Parquet writer)": _version("pyarrow"),
        },
        "stages": {
            name: {"fingerprint": m.get("fingerprint"), "code_version": m.get("code_version")}
            for name, m in run.manifests.items()
        },
        "source": public_sources(cfg),
    }


def funnel(run: RunData) -> list[dict[str, Any]]:
    """Per stage: rows out, rejects by reason, drops by rule, and the stage's own counts."""
    out = []
    for name, m in run.manifests.items():
        counts = {k: v for k, v in m.get("funnel", {}).items() if not k.startswith("dropped:")}
        drops = {k.removeprefix("dropped:"): v for k, v in m.get("funnel", {}).items() if k.startswith("dropped:")}
        out.append(
            {
                "stage": name,
                "rows": m.get("rows", 0),
                "rejects": m.get("rejects", 0),
                "dropped": m.get("dropped", 0),
                "counts": counts,
                "drops": drops,
                "rejects_by_reason": m.get("rejects_by_reason", {}),
            }
        )
    return out


def _shorten(value: Any, limit: int = 300) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"... [{len(value) - limit} more characters]"
    if isinstance(value, list):
        head = [_shorten(v, limit) for v in value[:6]]
        return head + ([f"... [{len(value) - 6} more]"] if len(value) > 6 else [])
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    return value


def _public_sample(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """The sample row with a local source path replaced by what it is a copy of (see ``public_location``)."""
    if row and isinstance(row.get("source"), str) and row["source"]:
        return {**row, "source": public_location(row["source"])}
    return row


def sample_row(row: dict[str, Any] | None) -> str:
    """One row as indented JSON, long texts and lists shortened so the card stays readable."""
    return json.dumps(_shorten(row), indent=2, ensure_ascii=False) if row else ""


# ----------------------------------------------------------------------------------------------- rendering
def _environment(template_dir: Path) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(template_dir)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["tojson_compact"] = lambda v: json.dumps(v, ensure_ascii=False, sort_keys=True)
    return env


def template_ref(template_dir: Path = CARDS_DIR, name: str = CARD_TEMPLATE) -> str:
    """``dataset_card@N`` from the template's ``{# version: N #}`` line, recorded in the card itself."""
    head = (template_dir / name).read_text(encoding="utf-8").split("\n", 1)[0]
    m = re.match(r"\{#\s*version:\s*([\w.-]+)\s*#\}", head)
    return f"{name.split('.')[0]}@{m.group(1) if m else 'unversioned'}"


def render_card(
    *,
    run: RunData,
    options: ExportOptions,
    splits: dict[str, dict[str, int]],
    columns: dict[str, list[str]],
    dists: list[Distribution],
    sample: dict[str, Any] | None,
    fingerprint: str,
    repo_id: str | None = None,
    template_dir: Path = CARDS_DIR,
) -> str:
    """The README.md text. ``splits`` is config -> split -> rows; ``repo_id`` only fills the loading snippet."""
    cfg = run.cfg
    rows = sum(splits.get("filtered", {}).values()) or sum(sum(s.values()) for s in splits.values())
    meta = card_metadata(cfg, options, {c: list(s) for c, s in splits.items()}, rows)
    context = {
        "metadata_yaml": yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000),
        "name": cfg.name,
        "pretty_name": meta["pretty_name"],
        "version": cfg.version,
        "description": cfg.description,
        "fingerprint": fingerprint,
        "repo_id": repo_id or "ORG/NAME",
        "license": options.license,
        "test_fraction": options.test_fraction,
        "paper": PAPER,
        "configs": [
            {"name": c, "description": CONFIG_DESCRIPTIONS.get(c, ""), "splits": s, "columns": columns.get(c, [])}
            for c, s in splits.items()
        ],
        "default_config": next(iter(splits), "filtered"),
        "filtered_fields": FILTERED_FIELDS,
        "config_names": list(splits),
        "distributions": [{"title": d.title, "table": d.table(), "plot": d.plot_path, "note": d.note} for d in dists],
        "funnel": funnel(run),
        "provenance": provenance(run),
        "sample": sample_row(_public_sample(sample)),
        "sim_roles": plain_list([f"the {role}" for role in sim_roles(cfg)]),
        "annotator": f"`{cfg.models.annotator.engine}` {redact_text(cfg.models.annotator.model)}",
        "skew": kept_skew(run),
        "refine_gap": refine_gap(run, sum(splits.get("sft_refine", {}).values())),
        "resolved_yaml": yaml.safe_dump(resolved_values(cfg), sort_keys=False, allow_unicode=True, width=1000),
        "config_yaml": yaml.safe_dump(public_config(cfg), sort_keys=False, allow_unicode=True, width=1000),
        "card_template": template_ref(template_dir),
    }
    return _environment(template_dir).get_template(CARD_TEMPLATE).render(**context)
