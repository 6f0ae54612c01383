"""Flawed-path construction: resample (RG2), typed injection (RG3), symbolic injection, dedup, balance, the actor
list and the per-strategy counts, on the offline sim engine and on real GSM8K reference solutions."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from amc.answers import extract, verify
from amc.backends.base import Completion, GenerationRequest, GenerationResponse
from amc.backends.sim import SimBackend
from amc.cli import app
from amc.config import FileSource, ModelConfig, PipelineConfig, load_config
from amc.engine.runner import Runner
from amc.engine.store import read_records
from amc.records import Problem, ReasoningPath, Reject
from amc.sources import load_problems
from amc.stages.base import StageContext
from amc.stages.flawed import resample, symbolic, typed
from amc.stages.flawed.common import balance, bases_by_problem, dedup, draw_step
from amc.stages.inject import InjectStage
from amc.stages.sample import SampleStage, grade_paths, reference_steps
from amc.steps import claims, first_false_arithmetic

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "pipelines" / "quickstart.yaml"
GSM8K = ROOT / "pipelines" / "gsm8k.yaml"


# --------------------------------------------------------------------------------------------- helpers
class Recorder:
    """A sim engine that keeps every request it answers; ``rewrite`` edits its responses (failures, cut-offs)."""

    def __init__(self, cfg: ModelConfig, rewrite=None):
        self.sim = SimBackend(cfg)
        self.model = cfg.model
        self.engine, self.revision = "sim", None
        self.requests: list[GenerationRequest] = []
        self.rewrite = rewrite

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResponse]:
        self.requests.extend(requests)
        out = self.sim.generate(requests)
        return [self.rewrite(r) for r in out] if self.rewrite else out


class Engines:
    """``get_backend`` for a StageContext: one Recorder per model block, created on first use."""

    def __init__(self, cfg: PipelineConfig, rewrite=None, forbid: bool = False):
        self.cfg, self.rewrite, self.forbid = cfg, rewrite, forbid
        self.live: dict[str, Recorder] = {}

    def __call__(self, role) -> Recorder:
        if self.forbid:
            raise AssertionError(f"no engine may be started, asked for {role!r}")
        model_cfg = role if isinstance(role, ModelConfig) else self.cfg.models.for_role(role)
        key = model_cfg.model_dump_json()
        if key not in self.live:
            self.live[key] = Recorder(model_cfg, self.rewrite)
        return self.live[key]

    def requests(self, task: str) -> list[GenerationRequest]:
        return [r for b in self.live.values() for r in b.requests if r.context.get("task") == task]


def _cfg(*overrides: str) -> PipelineConfig:
    return load_config(QUICKSTART, list(overrides))


def _ctx(cfg: PipelineConfig, **kw) -> tuple[StageContext, Engines]:
    engines = Engines(cfg, **kw)
    return StageContext(cfg=cfg, get_backend=engines), engines


def _path(
    problem: Problem,
    steps: list[str],
    strategy: str = "sample",
    idx: int = 0,
    correct: bool = True,
    source: str = "synthetic",
) -> ReasoningPath:
    return ReasoningPath(
        id=f"{problem.id}/{strategy}/{idx}",
        problem_id=problem.id,
        question=problem.question,
        reference_answer=problem.answer,
        steps=steps,
        strategy=strategy,
        generator="m",
        sample_index=idx,
        correct=correct,
        source=source,
    )


def _problems(count: int = 12, min_steps: int = 3, max_steps: int = 5) -> list[Problem]:
    from amc.config import SyntheticSource

    return load_problems(SyntheticSource(count=count, min_steps=min_steps, max_steps=max_steps), seed=0)


def _bases(problems: list[Problem]) -> dict[str, list[ReasoningPath]]:
    paths = [_path(p, reference_steps(p)) for p in problems]
    return bases_by_problem(paths)


def _only(built, reason: str) -> list[Reject]:
    return [r for r in built.rejects if r.reason == reason]


# --------------------------------------------------------------------------------------------- RG2 resample
def test_resample_continues_the_prefix_at_high_temperature_and_keeps_wrong_answers():
    cfg = _cfg("models.actor.error_rate=1.0", "stages.inject.resample.per_problem=2")
    ctx, engines = _ctx(cfg)
    problems = _problems()
    bases = _bases(problems)
    built = resample.build(bases, ctx)
    assert built.tried == 2 * len(problems)
    assert built.paths, built.rejects
    requests = {r.id: r for r in engines.requests("continue")}
    assert len(requests) == built.tried
    for p in built.paths:
        req = requests[f"{p.id}/continue"]
        k = req.context["k"]
        base = bases[p.problem_id][0]
        prefix = base.steps[:k]
        assert req.params.temperature == 1.0 and p.temperature == 1.0
        if prefix:  # a partial assistant turn, continued in place
            assert req.continue_final_message and req.messages[-1].role == "assistant"
            assert req.messages[-1].content == "\n".join(prefix) + "\n"
        else:
            assert not req.continue_final_message and req.messages[-1].role == "user"
        assert p.strategy == "resample" and p.generator == "sim-actor" and not p.correct
        assert p.steps[:k] == prefix
        # the first wrong step is the first one the continuation changed, at or after k
        assert p.error_step >= k
        assert p.steps[: p.error_step] == base.steps[: p.error_step]
        assert p.steps[p.error_step] != base.steps[p.error_step]
        assert first_false_arithmetic(p.steps) == p.error_step
        assert not verify(p.reference_answer, extract("\n".join(p.steps)))


def test_resample_from_the_exact_step_k_records_k():
    """A continuation that changes step k itself gets error_step == k."""
    problem = _problems(1)[0]
    base = _path(problem, reference_steps(problem))
    steps = [*base.steps[:1], "A different first result: 1 + 1 = 3.", *base.steps[2:]]
    assert resample.first_difference(steps, base.steps, 1) == 1
    assert resample.first_difference(base.steps, base.steps, 0) == len(base.steps) - 1


def test_resample_continuation_that_stays_right_is_a_reject():
    cfg = _cfg("models.actor.error_rate=0.0")
    ctx, _ = _ctx(cfg)
    built = resample.build(_bases(_problems(6)), ctx)
    assert built.paths == []
    assert len(_only(built, "answer_still_correct")) == 6
    assert all("/resample/" in r.row_id for r in built.rejects)


def test_k_distribution_shifts_the_drawn_step():
    candidates = list(range(8))
    means = {}
    for dist in ("uniform", "early", "late"):
        rng = random.Random(1)
        draws = [draw_step(candidates, rng, dist) for _ in range(4000)]
        assert set(draws) == set(candidates)  # every step stays possible
        means[dist] = sum(draws) / len(draws)
    assert means["early"] < means["uniform"] - 1.0 < means["late"] - 2.0
    assert draw_step([], random.Random(0), "late") is None


def test_k_distribution_reaches_the_resample_requests():
    problems = _problems(40, min_steps=6, max_steps=8)
    ks = {}
    for dist in ("early", "late"):
        cfg = _cfg(f"stages.inject.resample.k_distribution={dist}", "stages.inject.resample.per_problem=4")
        ctx, engines = _ctx(cfg)
        resample.build(_bases(problems), ctx)
        ks[dist] = [r.context["k"] for r in engines.requests("continue")]
        assert len(ks[dist]) == 160
    assert sum(ks["early"]) / 160 + 1.0 < sum(ks["late"]) / 160


# --------------------------------------------------------------------------------------------- RG3 typed
def test_typed_injection_names_the_type_and_keeps_it():
    cfg = _cfg("stages.inject.per_problem=3")
    ctx, engines = _ctx(cfg)
    bases = _bases(_problems())
    built = typed.build(bases, ctx)
    assert built.paths
    rewrites = {r.id.removesuffix("/rewrite"): r for r in engines.requests("inject")}
    types = {t.name: t for t in cfg.stages.inject.error_types}
    for p in built.paths:
        req = rewrites[p.id]
        et = types[p.error_type]
        prompt = "\n".join(m.content for m in req.messages)
        assert et.name in prompt and et.description in prompt
        assert p.error_type == req.context["error_type"]
        assert p.error_step == req.context["k"]
        assert p.strategy == "inject" and p.generator == "sim-injector+sim-actor" and not p.correct
        assert p.steps[: p.error_step] == bases[p.problem_id][0].steps[: p.error_step]


def test_typed_rejects_unchanged_step_and_answer_still_correct():
    problem = Problem(id="hand-0", question="q", answer="8", source="hand")
    # Step 0 has no arithmetic, so the sim injector hands it back unchanged; step 1's value is never used later.
    words = _path(problem, ["Read the question carefully.", "First, 4 * 2 = 8.", "The answer is 8."])
    unused = _path(problem, ["She has 2 + 3 = 5 apples.", "Separately, 4 * 2 = 8.", "The answer is 8."], idx=1)
    cfg = _cfg("stages.inject.per_problem=12")
    ctx, engines = _ctx(cfg)
    built = typed.build({problem.id: [words, unused]}, ctx)
    by_id = {r.id.removesuffix("/rewrite"): r.context for r in engines.requests("inject")}
    unchanged = _only(built, "unchanged_step")
    still = _only(built, "answer_still_correct")
    assert unchanged and still and built.paths
    for r in unchanged:
        c = by_id[r.row_id]
        assert c["steps"] == words.steps and c["k"] == 0
    for r in still:
        c = by_id[r.row_id]
        assert c["steps"] == unused.steps and c["k"] == 0  # a wrong 5 that nothing uses later
    assert all(p.error_step == 1 for p in built.paths)


def test_too_short_paths_and_engine_failures_are_rejects():
    problem = Problem(id="short-0", question="q", answer="4", source="hand")
    one = _path(problem, ["The answer is 4."])
    cfg = _cfg()
    ctx, _ = _ctx(cfg)
    for build in (resample.build, typed.build):
        built = build({problem.id: [one]}, ctx)
        assert [r.reason for r in built.rejects] == ["too_short"] and built.paths == []

    def fail(resp: GenerationResponse) -> GenerationResponse:
        return resp.model_copy(update={"completions": [], "error": "boom"})

    def cut(resp: GenerationResponse) -> GenerationResponse:
        return resp.model_copy(update={"completions": [Completion(text="1 + 1 =", finish_reason="length")]})

    def empty(resp: GenerationResponse) -> GenerationResponse:
        if not resp.request_id.endswith("/continue"):
            return resp
        return resp.model_copy(update={"completions": [Completion(text="\n \n", finish_reason="stop")]})

    bases = _bases(_problems(3))
    for rewrite, reason in ((fail, "engine_error"), (cut, "truncated"), (empty, "empty_response")):
        ctx, _ = _ctx(cfg, rewrite=rewrite)
        for build in (resample.build, typed.build):
            built = build(bases, ctx)
            assert built.paths == [] and {r.reason for r in built.rejects} == {reason}


# --------------------------------------------------------------------------------------------- dedup, balance
def test_dedup_keeps_the_first_of_each_text_per_problem():
    a, b = _problems(2)
    paths = [
        _path(a, ["1 + 1 = 2.", "The answer is 2."], idx=0),
        _path(a, ["1  +  1 = 2.", "the answer is 2."], idx=1),  # same text once normalised
        _path(a, ["1 + 1 = 3.", "The answer is 3."], idx=2, correct=False),
        _path(b, ["1 + 1 = 2.", "The answer is 2."], idx=0),  # same text, another problem: kept
    ]
    kept, rejects = dedup(paths)
    assert [p.id for p in kept] == [paths[0].id, paths[2].id, paths[3].id]
    assert [(r.row_id, r.reason, r.stage) for r in rejects] == [(paths[1].id, "duplicate", "inject")]


def test_stage_drops_duplicates_among_inputs_and_constructions():
    problems = _problems(8)
    rows = []
    for p in problems:  # the sim writes the reference solution: four identical correct samples
        rows += [_path(p, reference_steps(p), idx=i) for i in range(4)]
    cfg = _cfg("stages.inject.symbolic.enabled=false")
    ctx, _ = _ctx(cfg)
    res = InjectStage().run(rows, ctx)
    dups = [r for r in res.rejects if r.reason == "duplicate"]
    assert len([r for r in dups if "/sample/" in r.row_id]) == 3 * len(problems)
    texts = Counter((p.problem_id, "\n".join(p.steps)) for p in res.rows)
    assert max(texts.values()) == 1
    assert res.counts["rejected:sample:duplicate"] == 3 * len(problems)
    off = InjectStage().run(rows, _ctx(_cfg("stages.inject.dedup=false", "stages.inject.symbolic.enabled=false"))[0])
    assert not [r for r in off.rejects if r.reason == "duplicate"]


def test_balance_caps_correct_paths_per_source_and_strategy():
    problems = _problems(10)
    paths = []
    for i, p in enumerate(problems):
        paths += [_path(p, [f"{i} correct {j}"], idx=j) for j in range(3)]
        paths.append(_path(p, [f"{i} wrong"], idx=3, correct=False))
        paths.append(_path(p, [f"{i} other source"], idx=4, source="gsm8k"))  # no flawed path in its group
        paths.append(_path(p, [f"{i} resampled"], strategy="resample", correct=False))
    kept, rejects = balance(paths, 1.5, run_seed=0)
    n = Counter((p.source, p.strategy, p.correct) for p in kept)
    assert n[("synthetic", "sample", True)] == 15 and n[("synthetic", "sample", False)] == 10
    assert n[("gsm8k", "sample", True)] == 0
    assert n[("synthetic", "resample", False)] == 10
    assert {r.reason for r in rejects} == {"balance"} and len(rejects) == 30 - 15 + 10
    # deterministic and independent of the order of the rows
    again, _ = balance(list(reversed(paths)), 1.5, run_seed=0)
    assert {p.id for p in again} == {p.id for p in kept}
    other_seed, _ = balance(paths, 1.5, run_seed=1)
    assert {p.id for p in other_seed} != {p.id for p in kept}


# --------------------------------------------------------------------------------------------- actors
def test_sample_stage_with_several_actors_records_the_generator():
    cfg = _cfg(
        "stages.sample.n=3",
        "stages.sample.actors=[{engine: sim, model: actor-a, error_rate: 0.0}, "
        "{engine: sim, model: actor-b, error_rate: 1.0}]",
    )
    ctx, engines = _ctx(cfg)
    problems = _problems(5)
    res = SampleStage().run(problems, ctx)
    assert {b.model for b in engines.live.values()} == {"actor-a", "actor-b"}
    assert len(res.rows) == 2 * 3 * 5
    assert len({p.id for p in res.rows}) == len(res.rows)
    by_gen = {g: [p for p in res.rows if p.generator == g] for g in ("actor-a", "actor-b")}
    assert all(p.correct and "/sample/a0-" in p.id for p in by_gen["actor-a"])
    assert all(not p.correct and "/sample/a1-" in p.id for p in by_gen["actor-b"])
    assert res.counts["generator:actor-a"] == 15 and res.counts["paths:sample"] == 30

    single, _ = _ctx(_cfg("stages.sample.n=2"))
    rows = SampleStage().run(problems[:1], single).rows
    assert [p.id for p in rows] == [f"{problems[0].id}/sample/0", f"{problems[0].id}/sample/1"]
    assert {p.generator for p in rows} == {"sim-actor"}


def test_sample_stage_passes_reference_solutions_on():
    problems = _problems(3)
    # A reference that does not state its own answer is unreadable, not a flawed path.
    problems.append(
        Problem(id="bad-ref", question="q", answer="7", solution="2 + 3 = 5\nThe answer is 5.", source="hand")
    )
    ctx, _ = _ctx(_cfg("stages.sample.reference=true", "stages.sample.enabled=false"))
    res = SampleStage().run(problems, ctx)
    assert [p.strategy for p in res.rows] == ["reference"] * 3
    assert all(p.correct and p.error_step == -1 and p.generator == "reference" for p in res.rows)
    assert res.counts["paths:reference"] == 3
    assert [(r.row_id, r.reason) for r in res.rejects] == [("bad-ref/reference/0", "reference_not_gradable")]


# --------------------------------------------------------------------------------------------- symbolic
@pytest.fixture(scope="module")
def gsm8k_references(shared_data) -> list[ReasoningPath]:
    """Correct paths from the first 60 real GSM8K train reference solutions (read in place, never copied)."""
    source = FileSource(path=str(shared_data / "gsm8k" / "train.jsonl"), answer_format="gsm8k", limit=60)
    problems = load_problems(source, seed=0)
    paths = [_path(p, reference_steps(p), strategy="reference", source="gsm8k") for p in problems]
    return [p.model_copy(update={"error_step": -1}) for p in paths]


def _symbolic(paths: list[ReasoningPath], *overrides: str):
    cfg = _cfg(*overrides)
    ctx, _ = _ctx(cfg, forbid=True)  # any engine request fails the test
    return symbolic.build(bases_by_problem(paths, prefer="reference"), ctx)


def test_gsm8k_reference_solutions_read_as_graded_steps(gsm8k_references):
    first = gsm8k_references[0]
    assert first.steps == [
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
        "The answer is 72.",
    ]
    assert all("<<" not in s for p in gsm8k_references for s in p.steps)
    assert all(p.correct for p in grade_paths(gsm8k_references))


def test_symbolic_carry_on_real_gsm8k_solutions(gsm8k_references):
    built = _symbolic(gsm8k_references, "stages.inject.symbolic.carry=true")
    assert built.tried == len(gsm8k_references)
    assert len(built.paths) >= 0.8 * len(gsm8k_references)
    bases = {p.problem_id: p for p in gsm8k_references}
    for p in built.paths:
        base = bases[p.problem_id]
        k = p.error_step
        assert p.strategy == "symbolic" and p.generator == "symbolic" and p.error_type == "calculation"
        assert not p.correct and p.predicted_answer != base.reference_answer
        assert p.steps[:k] == base.steps[:k] and p.steps[k] != base.steps[k]
        assert first_false_arithmetic(p.steps) == k  # the wrong claim is at k, the carried steps agree with it
        assert len(p.steps) == len(base.steps)
    reasons = Counter(r.reason for r in built.rejects)
    assert set(reasons) <= {"answer_still_correct", "no_claim"}
    assert len(built.paths) + sum(reasons.values()) == built.tried


def test_symbolic_without_carry_leaves_later_steps_alone(gsm8k_references):
    built = _symbolic(gsm8k_references, "stages.inject.symbolic.carry=false")
    assert len(built.paths) >= 0.8 * len(gsm8k_references)
    bases = {p.problem_id: p for p in gsm8k_references}
    for p in built.paths:
        base, k = bases[p.problem_id], p.error_step
        assert p.steps[k + 1 :] == base.steps[k + 1 :] and p.steps[:k] == base.steps[:k]
        assert p.steps[k] != base.steps[k]
        assert first_false_arithmetic(p.steps) == k
        assert p.correct  # the answer line was left alone: a wrong step, a right answer
    assert not [r for r in built.rejects if r.reason == "answer_still_correct"]


def test_symbolic_modes_record_their_error_type(gsm8k_references):
    built = _symbolic(gsm8k_references, "stages.inject.symbolic.modes=[operator]")
    assert built.paths and {p.error_type for p in built.paths} == {"wrong_operation"}
    bases = {p.problem_id: p for p in gsm8k_references}
    for p in built.paths:
        assert all(c.true for c in claims(p.steps[p.error_step]))  # consistent, but the wrong quantity
        assert p.steps[p.error_step] != bases[p.problem_id].steps[p.error_step]
    operand = _symbolic(gsm8k_references, "stages.inject.symbolic.modes=[operand]")
    # an operand change keeps the stated result, so carrying it changes no answer
    assert operand.paths == [] and {r.reason for r in operand.rejects} <= {"answer_still_correct", "no_claim"}


def test_symbolic_without_arithmetic_is_a_reject():
    problem = Problem(id="words-0", question="q", answer="yes", source="hand")
    path = _path(problem, ["Think about it.", "It must be so.", "The answer is yes."])
    built = _symbolic([path])
    assert built.paths == [] and [r.reason for r in built.rejects] == ["no_claim"]


def test_balance_counts_a_known_error_step_as_flawed(gsm8k_references):
    built = _symbolic(gsm8k_references, "stages.inject.symbolic.carry=false")
    kept, rejects = balance(built.paths + gsm8k_references, 0.5, run_seed=0)
    assert sum(p.strategy == "symbolic" for p in kept) == len(built.paths)  # right answers, known errors: kept
    assert sum(p.strategy == "reference" for p in kept) == 0  # no flawed reference: no correct one either
    assert len(rejects) == len(gsm8k_references)


# --------------------------------------------------------------------------------------------- whole builds
def _status(config: Path, sets: list[str], *flags: str) -> str:
    res = CliRunner().invoke(app, ["status", *flags, "--config", str(config), *[a for x in sets for a in ("--set", x)]])
    assert res.exit_code == 0, res.output
    return res.output


def _rows(folder: Path, kind):
    return [r for f in sorted(folder.glob("*.parquet")) for r in read_records(f, kind)]


def test_quickstart_mixes_strategies_and_status_shows_their_counts(tmp_path):
    sets = [f"run_dir={tmp_path / 'run'}", "source.count=16", "shard_size=8"]
    Runner(load_config(QUICKSTART, sets), show_progress=False).build("inject")
    status = json.loads(_status(QUICKSTART, sets, "--json"))
    funnel = status["stages"]["inject"]["funnel"]
    rows = _rows(tmp_path / "run" / "inject" / "data", ReasoningPath)
    by_strategy = Counter(p.strategy for p in rows)
    assert set(by_strategy) == {"sample", "resample", "inject", "symbolic"}
    for strategy, n in by_strategy.items():
        assert funnel[f"paths:{strategy}"] == n
    assert all(funnel[f"tried:{s}"] > 0 for s in ("resample", "inject", "symbolic"))
    assert status["stages"]["sample"]["funnel"]["paths:sample"] == 16 * 4
    rejects = _rows(tmp_path / "run" / "inject" / "rejects", Reject)
    assert sum(v for k, v in funnel.items() if k.startswith("rejected:")) == len(rejects)
    assert all(p.error_step is not None and p.error_step >= 0 for p in rows if p.strategy != "sample")
    text = _status(QUICKSTART, sets)
    for key in ("sample funnel", "inject funnel", "paths:sample", "paths:resample", "paths:inject", "paths:symbolic"):
        assert key in text


def test_gsm8k_pipeline_mixes_every_strategy_on_shared_data(tmp_path, shared_data):
    base = load_config(GSM8K)
    assert base.source.kind == "hub" and base.source.preset == "gsm8k" and base.source.split == "train"
    assert base.models.actor.engine == "vllm"
    sets = [
        f"run_dir={tmp_path / 'run'}",
        f"source.dataset={shared_data / 'gsm8k' / 'train.jsonl'}",
        "source.limit=24",
        "shard_size=12",
        "models.actor.engine=sim",
        "models.annotator.engine=sim",
        "stages.filter.n=2",
        "stages.filter.k=1",
    ]
    cfg = load_config(GSM8K, sets)
    reports = Runner(cfg, show_progress=False).build("filter")
    assert [r.name for r in reports] == ["problems", "sample", "inject", "critique", "filter"]
    rows = _rows(tmp_path / "run" / "inject" / "data", ReasoningPath)
    by_strategy = Counter(p.strategy for p in rows)
    assert {"sample", "resample", "inject", "symbolic"} <= set(by_strategy)
    assert all(p.problem_id.startswith("gsm8k-train-") for p in rows)
    # symbolic paths perturb the human-written reference solutions (base: reference)
    assert {p.error_type for p in rows if p.strategy == "symbolic"} == {"calculation"}
    # balance 1.0: no (source, strategy) holds more correct than flawed paths
    groups = Counter((p.source, p.strategy, p.correct) for p in rows)
    for (source, strategy, correct), n in groups.items():
        if correct:
            assert n <= groups[(source, strategy, False)]
    status = json.loads(_status(GSM8K, sets, "--json"))
    assert all(s["state"] == "done" for s in status["stages"].values())
    funnel = status["stages"]["inject"]["funnel"]
    assert all(funnel[f"paths:{s}"] == n for s, n in by_strategy.items())
