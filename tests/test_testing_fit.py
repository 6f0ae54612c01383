"""amc.testing.fit: a tiny model taught (prompt, answer) pairs answers those prompts with those answers and stops."""

from __future__ import annotations

from pathlib import Path

from amc.backends.base import GenerationRequest, Message, SamplingParams
from amc.backends.transformers import TransformersBackend
from amc.config import ModelConfig, load_config
from amc.testing import build_tiny_llama
from amc.testing.fit import record_sim_answers, teach

ROOT = Path(__file__).resolve().parents[1]


def _req(question: str, partial: str | None = None) -> GenerationRequest:
    messages = [Message(role="user", content=question)]
    if partial is not None:
        messages.append(Message(role="assistant", content=partial))
    return GenerationRequest(
        id=question,
        role="actor",
        messages=messages,
        continue_final_message=partial is not None,
        params=SamplingParams(temperature=0.0, max_tokens=40),
    )


def test_a_taught_tiny_model_answers_its_prompts_and_stops(tmp_path):
    pairs = [
        (_req("Ann has 12 apples and buys 30 more. How many?"), "12 + 30 = 42.\nThe answer is 42."),
        (_req("Ben has 7 pens and loses 2. How many?"), "7 - 2 = 5.\nThe answer is 5."),
        (_req("Ben has 7 pens and loses 2. How many?", "7 - 2 ="), " 5.\nThe answer is 5."),
    ]
    tiny = build_tiny_llama(tmp_path / "tiny")
    taught, losses = teach(tiny, pairs, tmp_path / "taught", steps=80, learning_rate=1e-2)
    assert losses[-1] < 0.05 * losses[0], losses
    engine = TransformersBackend(ModelConfig(engine="transformers", model=str(taught)))
    answers = engine.generate([req for req, _ in pairs])
    assert [(r.completions[0].text, r.completions[0].finish_reason) for r in answers] == [
        (text, "stop") for _, text in pairs
    ]


def test_recording_keeps_every_distinct_answer_of_a_sim_build(tmp_path):
    cfg = load_config(ROOT / "pipelines" / "quickstart.yaml", [f"run_dir={tmp_path}", "source.count=2"])
    pairs = record_sim_answers(cfg)
    tasks = {req.context["task"] for req, _ in pairs}
    assert {"solve", "critique", "refine"} <= tasks
    assert len({(req.model_dump_json(include={"messages", "continue_final_message"}), t) for req, t in pairs}) == len(
        pairs
    )
