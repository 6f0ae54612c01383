"""What the filter stage asks the actor for Math-Shepherd step labels: one continuation per step prefix of each
path, with the question, the prefix as the partial answer, its own seed and the configured sampling."""

from __future__ import annotations

from amc.backends.base import GenerationRequest
from amc.backends.sim import SimBackend
from amc.config import config_from_dict
from amc.records import ReasoningPath
from amc.stages.base import StageContext
from amc.stages.filter import step_labels

STEPS = ["3 * 4 = 12 pens.", "She gives away 2, so 12 - 2 = 10.", "The answer is 10."]


def _path(pid: str, question: str) -> ReasoningPath:
    return ReasoningPath(
        id=f"{pid}/sample/0",
        problem_id=pid,
        question=question,
        reference_answer="10",
        steps=STEPS,
        strategy="sample",
        generator="sim",
    )


def _asked(rollouts: int = 3, seed: int = 0) -> tuple[list[GenerationRequest], list]:
    cfg = config_from_dict(
        {
            "name": "x",
            "seed": seed,
            "stages": {
                "filter": {
                    "step_labels": {
                        "enabled": True,
                        "rollouts": rollouts,
                        "sampling": {"temperature": 0.9, "top_p": 0.8, "max_tokens": 77},
                    }
                }
            },
        }
    )
    sim = SimBackend(cfg.models.actor)
    asked: list[GenerationRequest] = []

    class Recorder:
        engine, model, revision = "sim", "sim", None

        def generate(self, requests):
            asked.extend(requests)
            return sim.generate(requests)

    ctx = StageContext(cfg=cfg, get_backend=lambda role: Recorder())
    labels, rejects = step_labels([_path("p-1", "Q one?"), _path("p-2", "Q two?")], ctx)
    assert not rejects and len(labels) == 2
    return asked, labels


def test_one_continuation_of_each_prefix_with_the_question_and_the_configured_sampling():
    asked, labels = _asked()
    assert [r.id for r in asked] == [f"p-{k}/sample/0/rollout/{i}" for k in (1, 2) for i in range(3)]
    for r in asked:
        k, i = int(r.id[2]), int(r.id.rsplit("/", 1)[1])
        assert r.continue_final_message and r.role == "actor" and r.template
        assert r.messages[-1].role == "assistant" and r.messages[-1].content == "\n".join(STEPS[: i + 1]) + "\n"
        assert any(m.role == "user" and ("Q one?" if k == 1 else "Q two?") in m.content for m in r.messages)
        p = r.params
        assert (p.n, p.temperature, p.top_p, p.max_tokens) == (3, 0.9, 0.8, 77)
    assert all(lab.rollouts == 3 and len(lab.soft_labels) == len(STEPS) for lab in labels)


def test_every_prefix_has_its_own_seed_that_follows_the_run_seed():
    asked, _ = _asked()
    seeds = [r.params.seed for r in asked]
    assert None not in seeds and len(set(seeds)) == len(seeds)
    again, _ = _asked()
    assert [r.params.seed for r in again] == seeds
    other, _ = _asked(seed=1)
    assert not set(r.params.seed for r in other) & set(seeds)
