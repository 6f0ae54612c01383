"""GRPO reward components on hand-made cases: verdict, first error, format, correction (grading and the sim actor)."""

from __future__ import annotations

import json

import pytest

from amc.backends.base import Completion, GenerationResponse
from amc.config import ModelConfig
from amc.critique_format import render_text
from amc.records import StepVerdict
from amc.train.rewards import (
    CorrectionJudge,
    PathCase,
    RewardComponent,
    first_error_reward,
    format_reward,
    known_first_error,
    mean_by_step,
    verdict_reward,
)

QUESTION = "Tom has 2 bags of 3 apples and buys 1 more apple. How many apples does he have?"
CORRECT_STEPS = ["He has 2 * 3 = 6 apples in bags.", "With one more he has 6 + 1 = 7 apples.", "The answer is 7."]
FLAWED_STEPS = ["He has 2 * 3 = 5 apples in bags.", "With one more he has 5 + 1 = 6 apples.", "The answer is 6."]
FLAWED = PathCase("p/inject/0", QUESTION, "7", FLAWED_STEPS, correct=False, error_step=0)
CORRECT = PathCase("p/sample/0", QUESTION, "7", CORRECT_STEPS, correct=True, error_step=None)
UNKNOWN = PathCase("p/sample/1", QUESTION, "7", FLAWED_STEPS, correct=False, error_step=None)


def critique(steps: list[str], wrong: set[int], final_correct: bool) -> str:
    verdicts = [
        StepVerdict(index=i, step=s, correct=i not in wrong, explanation="checked") for i, s in enumerate(steps)
    ]
    return render_text(verdicts, final_correct, "checked")


GOOD = critique(FLAWED_STEPS, {0, 1, 2}, final_correct=False)  # first error at the known step 0
LATE = critique(FLAWED_STEPS, {1, 2}, final_correct=False)  # right verdict, wrong first error
FOOLED = critique(FLAWED_STEPS, set(), final_correct=True)  # says the flawed path is correct
PRAISE = critique(CORRECT_STEPS, set(), final_correct=True)
NO_FINAL = GOOD.rsplit("Correctness of the final answer", 1)[0]


def test_verdict_agreement():
    assert verdict_reward(FLAWED, GOOD) == 1.0 and verdict_reward(FLAWED, LATE) == 1.0
    assert verdict_reward(FLAWED, FOOLED) == 0.0
    assert verdict_reward(CORRECT, PRAISE) == 1.0
    assert verdict_reward(CORRECT, critique(CORRECT_STEPS, {2}, final_correct=False)) == 0.0
    assert verdict_reward(FLAWED, NO_FINAL) == 0.0  # no verdict is no agreement
    assert verdict_reward(FLAWED, "I think it is fine.") == 0.0


def test_first_error_agreement_with_the_known_step():
    assert first_error_reward(FLAWED, GOOD) == 1.0
    assert first_error_reward(FLAWED, LATE) == 0.0
    assert first_error_reward(FLAWED, FOOLED) == 0.0  # -1 (no wrong step) is not step 0
    assert first_error_reward(CORRECT, PRAISE) == 1.0  # a correct path: no Wrong step is right
    assert first_error_reward(CORRECT, critique(CORRECT_STEPS, {1}, final_correct=True)) == 0.0
    assert first_error_reward(UNKNOWN, GOOD) is None  # a sampled wrong path: the error step is not known
    assert known_first_error(PathCase("x", "q", "1", ["a"], True, -1)) == -1


def test_format_parses_fully_partly_or_not():
    assert format_reward(FLAWED, GOOD) == 1.0
    assert format_reward(FLAWED, NO_FINAL) == 0.5
    assert format_reward(FLAWED, "The solution looks wrong to me.") == 0.0


def _fake_actor(texts_by_request: list[list[tuple[str, str]]], error_at: int | None = None):
    """An engine stand-in that answers request i with the (text, finish reason) pairs given for it."""
    seen = []

    def generate(requests):
        seen.extend(requests)
        out = []
        for i, req in enumerate(requests):
            if i == error_at:
                out.append(GenerationResponse(request_id=req.id, error="boom"))
                continue
            comps = [Completion(text=t, finish_reason=f) for t, f in texts_by_request[i]]
            out.append(GenerationResponse(request_id=req.id, completions=comps))
        return out

    return generate, seen


def test_correction_counts_correct_full_refinements_only():
    right = "\n".join(CORRECT_STEPS)
    generate, seen = _fake_actor(
        [
            [(right, "stop"), (right, "stop")],  # both correct: 1.0
            [(right, "stop"), ("\n".join(FLAWED_STEPS), "stop")],  # one of two: 0.5
            [("The answer is 7.", "stop"), (right, "length")],  # a shortcut and a cut-off text: 0
            [],  # an engine error: 0
        ],
        error_at=3,
    )
    judge = CorrectionJudge(generate, refinements=2, min_refinement_steps=2)
    cases = [FLAWED, FLAWED, FLAWED, FLAWED]
    assert judge.rewards(cases, [GOOD, GOOD, GOOD, GOOD]) == [1.0, 0.5, 0.0, 0.0]
    req = seen[0]
    assert req.params.n == 2 and req.role == "refiner"
    assert GOOD in req.messages[-1].content and "He has 2 * 3 = 5 apples" in req.messages[-1].content
    assert seen[0].params.seed == seen[1].params.seed  # seeded by the path: same critique, same request


def test_correction_with_the_sim_actor_rewards_the_critique_that_finds_the_error(tmp_path):
    from amc.backends import create
    from amc.engine.cache import CachedBackend, RequestCache

    cache = RequestCache(tmp_path / "cache.sqlite")
    cfg = ModelConfig(engine="sim", model="sim-actor")
    backend = CachedBackend(create(cfg), cache, identity=cfg.identity())
    judge = CorrectionJudge(backend.generate, refinements=16)
    good, fooled = judge.rewards([FLAWED, FLAWED], [GOOD, FOOLED])
    assert fooled == 0.0  # told the path is right, the actor keeps its wrong answer
    assert 0.5 <= good < 1.0  # the sim actor fixes the flagged step, except when it shortcuts or ignores
    assert backend.made == 2
    assert judge.rewards([FLAWED, FLAWED], [GOOD, FOOLED]) == [good, fooled]
    assert backend.made == 2 and backend.cached == 2  # asked again: answered by the request cache
    cache.close()


def test_reward_component_logs_every_value(tmp_path):
    log = tmp_path / "rewards.jsonl"
    component = RewardComponent("first_error", log_path=log)

    class State:
        global_step = 4

    columns = {
        "path_id": [FLAWED.path_id, UNKNOWN.path_id],
        "question": [QUESTION, QUESTION],
        "reference_answer": ["7", "7"],
        "steps": [FLAWED_STEPS, FLAWED_STEPS],
        "path_correct": [False, False],
        "error_step": [0, None],
        "trainer_state": State(),
    }
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": GOOD}]]
    assert component(prompts=["a", "b"], completions=completions, **columns) == [1.0, None]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows == [
        {"step": 5, "component": "first_error", "path_id": FLAWED.path_id, "reward": 1.0},
        {"step": 5, "component": "first_error", "path_id": UNKNOWN.path_id, "reward": None},
    ]
    assert mean_by_step(log) == {"first_error": [(5, 1.0)]}
    with pytest.raises(ValueError, match="CorrectionJudge"):
        RewardComponent("correction")
    with pytest.raises(ValueError, match="unknown reward component"):
        RewardComponent("style")
