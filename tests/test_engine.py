"""The request cache, fingerprints and the sim engine."""

from __future__ import annotations

from amc.backends.base import Completion, GenerationRequest, GenerationResponse, Message, SamplingParams
from amc.backends.sim import SimBackend, carry
from amc.config import ModelConfig, config_from_dict
from amc.critique_format import parse_text
from amc.engine.cache import CachedBackend, RequestCache, request_key
from amc.engine.runner import expected_fingerprints
from amc.steps import first_false_arithmetic


class Flaky:
    """An engine that fails, truncates or answers, as told; counts what it was asked."""

    engine, model, revision = "flaky", "m", None

    def __init__(self, mode: str):
        self.mode, self.calls = mode, 0

    def generate(self, requests):
        self.calls += len(requests)
        if self.mode == "error":
            return [GenerationResponse(request_id=r.id, error="HTTP 500") for r in requests]
        reason = "length" if self.mode == "length" else "stop"
        return [
            GenerationResponse(request_id=r.id, completions=[Completion(text="x", finish_reason=reason)])
            for r in requests
        ]

    def close(self):
        pass


def _req(i: int = 0, **kw) -> GenerationRequest:
    return GenerationRequest(
        id=f"r{i}",
        role="actor",
        messages=[Message(role="user", content=f"q{i}")],
        params=SamplingParams(n=2, seed=i),
        **kw,
    )


def test_cache_serves_repeats_and_ignores_ids(tmp_path):
    cache = RequestCache(tmp_path / "c.sqlite")
    engine = Flaky("ok")
    cached = CachedBackend(engine, cache)
    first = cached.generate([_req(0), _req(1)])
    again = cached.generate([_req(0).model_copy(update={"id": "other"}), _req(1)])
    assert engine.calls == 2 and cached.made == 2 and cached.cached == 2
    assert [r.request_id for r in again] == ["other", "r1"] and all(r.cached for r in again)
    assert [r.completions for r in again] == [r.completions for r in first]
    cache.close()
    # persisted across processes
    reopened = CachedBackend(Flaky("ok"), RequestCache(tmp_path / "c.sqlite"))
    reopened.generate([_req(0)])
    assert reopened.made == 0 and reopened.cached == 1


def test_failures_and_truncations_are_never_cached(tmp_path):
    for mode in ("error", "length"):
        cache = RequestCache(tmp_path / f"{mode}.sqlite")
        engine = Flaky(mode)
        cached = CachedBackend(engine, cache)
        cached.generate([_req(0)])
        cached.generate([_req(0)])
        assert engine.calls == 2 and len(cache) == 0


def test_key_covers_everything_that_changes_the_answer():
    base = _req(0)
    k = request_key("e", "m", None, base)
    assert request_key("e", "m", "rev2", base) != k
    assert request_key("e", "m2", None, base) != k
    assert request_key("e", "m", None, base.model_copy(update={"params": SamplingParams(n=3, seed=0)})) != k
    assert request_key("e", "m", None, base.model_copy(update={"params": SamplingParams(n=2, seed=1)})) != k
    assert request_key("e", "m", None, base.model_copy(update={"template": "solve@2"})) != k
    assert request_key("e", "m", None, base.model_copy(update={"continue_final_message": True})) != k
    other_question = [Message(role="user", content="q1")]
    assert request_key("e", "m", None, base.model_copy(update={"messages": other_question})) != k
    assert request_key("e", "m", None, base.model_copy(update={"response_schema": {"type": "object"}})) != k
    assert request_key("e2", "m", None, base) != k
    assert request_key("e", "m", None, base, {"base_url": "http://b"}) != k
    # the address and the sim's context are not content
    assert request_key("e", "m", None, base.model_copy(update={"id": "zz", "context": {"a": 1}})) == k


def test_fingerprints_chain_downstream():
    a = expected_fingerprints(config_from_dict({"name": "x"}))
    b = expected_fingerprints(config_from_dict({"name": "x", "stages": {"critique": {"n": 2}}}))
    assert [s for s in a if a[s] != b[s]] == ["critique", "filter"]
    c = expected_fingerprints(config_from_dict({"name": "x", "run_dir": "elsewhere", "shard_size": 64}))
    assert c == a  # where the run lives does not change what it contains


# ------------------------------------------------------------------------------------------------ sim
SOLUTION = "3 * 4 = 12 pens.\nShe gives away 2, so 12 - 2 = 10.\nHalf of them: 10 / 2 = 5.\nThe answer is 5."


def _sim(error_rate=0.0) -> SimBackend:
    return SimBackend(ModelConfig(engine="sim", model="sim", error_rate=error_rate))


def _ask(sim, context, n=1, seed=1):
    req = GenerationRequest(
        id="r",
        role="actor",
        messages=[Message(role="user", content="q")],
        params=SamplingParams(n=n, seed=seed),
        context=context,
    )
    return [c.text for c in sim.generate([req])[0].completions]


def test_carry_propagates_a_wrong_value():
    steps = SOLUTION.splitlines()
    out = carry(steps, 0, "3 * 4 = 14 pens.")
    assert out == [
        "3 * 4 = 14 pens.",
        "She gives away 2, so 14 - 2 = 12.",
        "Half of them: 12 / 2 = 6.",
        "The answer is 6.",
    ]


def test_sim_actor_is_deterministic_and_errs_at_its_rate():
    ctx = {"task": "solve", "question": "q", "answer": "5", "solution": SOLUTION}
    assert _ask(_sim(0.0), ctx, n=3) == [SOLUTION] * 3
    texts = _ask(_sim(0.5), ctx, n=64)
    assert texts == _ask(_sim(0.5), ctx, n=64)
    wrong = [t for t in texts if not t.endswith("The answer is 5.")]
    assert 15 <= len(wrong) <= 50
    assert all(first_false_arithmetic(t.splitlines()) is not None for t in wrong)


def test_sim_annotator_finds_the_first_error():
    steps = [
        "3 * 4 = 12 pens.",
        "She gives away 2, so 12 - 2 = 11.",
        "Half of them: 11 / 2 = 5.5.",
        "The answer is 5.5.",
    ]
    (text,) = _ask(_sim(0.0), {"task": "critique", "steps": steps, "reference_answer": "5"})
    parsed = parse_text(text, steps)
    assert parsed.first_error_step == 1 and parsed.final_verdict is False
    (hinted,) = _ask(_sim(0.0), {"task": "critique", "steps": steps, "reference_answer": "5", "error_step": 2})
    assert parse_text(hinted, steps).first_error_step == 2


def test_sim_refiner_fixes_from_the_flagged_step():
    steps = [
        "3 * 4 = 12 pens.",
        "She gives away 2, so 12 - 2 = 11.",
        "Half of them: 11 / 2 = 5.5.",
        "The answer is 5.5.",
    ]
    texts = _ask(_sim(0.0), {"task": "refine", "steps": steps, "first_error_step": 1, "answer": "5"}, n=40)
    fixed = [t for t in texts if t.endswith("The answer is 5.") and len(t.splitlines()) == 4]
    shortcuts = [t for t in texts if t == "The answer is 5."]
    assert fixed and shortcuts and len(fixed) + len(shortcuts) < len(texts)  # some attempts ignore the critique


def test_sim_unknown_task_is_an_error_row_not_an_exception():
    (resp,) = _sim().generate([GenerationRequest(id="r", role="actor", messages=[], context={})])
    assert resp.error and not resp.ok


def test_derived_seeds_are_stable():
    from amc.stages.base import derive_seed

    assert derive_seed(0, "p1", "sample") == derive_seed(0, "p1", "sample")
    assert len({derive_seed(0, f"p{i}", "sample") for i in range(1000)}) == 1000
    assert derive_seed(1, "p1", "sample") != derive_seed(0, "p1", "sample")
    seeds = [derive_seed(run, f"p{i}", "sample", j) for run in (0, 1) for i in range(200) for j in range(3)]
    assert all(0 <= s < 2**31 for s in seeds)  # a valid seed for every engine (31 bits, never negative)
    assert max(seeds) >= 2**30  # and the whole range is used, not a small slice of it


def test_a_template_edit_without_a_version_bump_still_rebuilds(tmp_path):
    from amc.prompts import BUILTIN_DIR

    base = expected_fingerprints(config_from_dict({"name": "x"}))
    mine = tmp_path / "prompts"
    mine.mkdir()
    # the same version label, another text, in the user's folder
    (mine / "critique.jinja").write_text((BUILTIN_DIR / "critique.jinja").read_text().replace("meticulous", "kind"))
    other = expected_fingerprints(config_from_dict({"name": "x", "prompts_dir": str(mine)}))
    assert [s for s in base if base[s] != other[s]] == ["critique", "filter"]
    # an edited partial counts too, though the including template is unchanged
    (mine / "critique.jinja").unlink()
    (mine / "_critique_body.jinja").write_text((BUILTIN_DIR / "_critique_body.jinja").read_text() + "\nBe brief.")
    partial = expected_fingerprints(config_from_dict({"name": "x", "prompts_dir": str(mine)}))
    assert partial["critique"] != base["critique"] and partial["sample"] == base["sample"]


def test_shard_size_is_part_of_the_content():
    a = expected_fingerprints(config_from_dict({"name": "x", "shard_size": 8}))
    b = expected_fingerprints(config_from_dict({"name": "x", "shard_size": 16}))
    assert all(a[s] != b[s] for s in a)
