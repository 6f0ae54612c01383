"""The transformers engine on a tiny Llama built offline (and the tiny-model builder itself)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from _requests import PARTIAL, QUESTION, ask, continue_partial

from amc.backends import Backend, GenerationRequest, Message, SamplingParams, create
from amc.backends.transformers import TransformersBackend
from amc.config import ModelConfig
from amc.testing import build_tiny_llama


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> TransformersBackend:
    b = TransformersBackend(ModelConfig(engine="transformers", model=str(tiny_model), dtype="float32", batch_size=4))
    yield b
    b.close()


def texts(response) -> list[str]:
    return [c.text for c in response.completions]


def test_tiny_llama_loads_with_a_generation_marked_chat_template(tiny_model: Path):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "llama"
    assert model.config.hidden_size // model.config.num_attention_heads == 32  # vLLM's CPU backend needs >= 32
    assert model.dtype == torch.float32
    assert "{% generation %}" in tok.chat_template
    chat = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "The answer is 42."}]
    out = tok.apply_chat_template(chat, return_assistant_tokens_mask=True, return_dict=True)
    marked = [t for t, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(marked) == "The answer is 42." + tok.eos_token  # only the assistant's turn is a target
    assert tok.decode(tok(QUESTION, add_special_tokens=False)["input_ids"]) == QUESTION  # text round-trips


def test_factory_builds_the_engine_and_it_speaks_the_protocol(tiny_model: Path):
    b = create(ModelConfig(engine="transformers", model=str(tiny_model)))
    try:
        assert isinstance(b, TransformersBackend) and isinstance(b, Backend)
        assert (b.engine, b.model, b.revision) == ("transformers", str(tiny_model), None)
        assert str(tiny_model) in repr(b)
    finally:
        b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.generate([ask("late")])


def test_n_samples_per_request_in_order_with_token_counts(backend: TransformersBackend):
    requests = [ask(f"r{i}", f"Ben has {i} pens.", n=3, max_tokens=12, temperature=1.0, seed=i) for i in range(5)]
    responses = backend.generate(requests)
    assert [r.request_id for r in responses] == [q.id for q in requests]
    rendered = backend.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Ben has 0 pens."}], tokenize=False, add_generation_prompt=True
    )
    prompt_len = len(backend.tokenizer(rendered, add_special_tokens=False)["input_ids"])
    for r in responses:
        assert r.ok and r.error is None and r.engine == "transformers"
        assert len(r.completions) == 3
        assert len(set(texts(r))) == 3  # three samples, not one repeated
        for c in r.completions:
            assert c.prompt_tokens == prompt_len
            assert 1 <= c.completion_tokens <= 12
            # a random tiny model seldom says EOS: "length" exactly when all 12 tokens were used
            assert c.finish_reason == ("length" if c.completion_tokens == 12 else "stop")
    assert any(c.finish_reason == "length" for r in responses for c in r.completions)


def test_a_seed_fixes_the_samples_whatever_shares_the_batch(backend: TransformersBackend):
    target = ask("t", n=3, max_tokens=10, temperature=1.0, seed=1234)
    alone = backend.generate([target])[0]
    crowded = backend.generate([ask("x", "Carla has 7 books.", n=2, max_tokens=10, seed=9), target])[1]
    again = backend.generate([target])[0]
    assert texts(alone) == texts(crowded) == texts(again)
    other = backend.generate([ask("t", n=3, max_tokens=10, temperature=1.0, seed=1235)])[0]
    assert texts(other) != texts(alone)


def test_greedy_is_deterministic_and_stop_strings_cut_the_text(backend: TransformersBackend):
    first = backend.generate([ask("g", max_tokens=16, temperature=0.0)])[0].completions[0]
    second = backend.generate([ask("g", max_tokens=16, temperature=0.0)])[0].completions[0]
    assert first.text == second.text and len(first.text) > 4
    stop = first.text[3:5]
    cut = backend.generate([ask("g", max_tokens=16, temperature=0.0, stop=[stop])])[0].completions[0]
    assert cut.finish_reason == "stop"
    assert cut.text == first.text[: first.text.find(stop)]


def test_continue_final_message_continues_the_partial_assistant_turn(backend: TransformersBackend, tiny_model):
    tok, lm = backend.tokenizer, transformers.AutoModelForCausalLM.from_pretrained(tiny_model)
    # What the model must see: the partial step left open (no EOS, no new assistant header), written out by hand.
    open_turn = f"<s><|user|>\n{QUESTION}</s>\n<|assistant|>\n{PARTIAL}"
    ids = tok(open_turn, add_special_tokens=False, return_tensors="pt")["input_ids"]
    expected_ids = lm.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1] :].tolist()
    eos = tok.eos_token_id
    expected_ids = expected_ids[: expected_ids.index(eos) + 1] if eos in expected_ids else expected_ids
    expected = tok.decode(expected_ids, skip_special_tokens=True)

    got = backend.generate([continue_partial("c", max_tokens=8, temperature=0.0)])[0]
    assert got.ok
    assert got.completions[0].prompt_tokens == ids.shape[1]
    assert got.completions[0].text == expected
    # Without continue_final_message the same conversation is a closed turn followed by a new one.
    closed = GenerationRequest(
        id="d",
        role="actor",
        params=SamplingParams(max_tokens=8, temperature=0.0),
        messages=continue_partial("c").messages,
    )
    assert backend.generate([closed])[0].completions[0].prompt_tokens > ids.shape[1]


def test_a_bad_request_fails_alone(tiny_model: Path):
    b = TransformersBackend(ModelConfig(engine="transformers", model=str(tiny_model), max_model_len=64))
    try:
        nothing_to_continue = GenerationRequest(
            id="bad", role="actor", continue_final_message=True, messages=[Message(role="user", content=QUESTION)]
        )
        too_long = ask("long", " ".join([QUESTION] * 10))
        good = ask("good", n=2, max_tokens=200, seed=3)
        out = b.generate([nothing_to_continue, good, too_long])
        assert [r.request_id for r in out] == ["bad", "good", "long"]
        assert not out[0].ok and "continue" in out[0].error
        assert not out[2].ok and "max_model_len" in out[2].error
        assert out[1].ok and len(out[1].completions) == 2
        # max_tokens is clipped to what the context window has left
        assert all(c.prompt_tokens + c.completion_tokens <= 64 for c in out[1].completions)
    finally:
        b.close()


def critique_request(rid: str, **params) -> GenerationRequest:
    from amc.critique_format import critique_json_schema

    schema = critique_json_schema(max_steps=2, explanation_chars=12, step_chars=12)
    return GenerationRequest(
        id=rid,
        role="annotator",
        messages=[Message(role="user", content="Critique: Step 1: 2 + 2 = 4. Step 2: 4 * 3 = 13.")],
        params=SamplingParams(**params),
        response_schema=schema,
    )


def test_a_response_schema_constrains_the_output_to_valid_json(backend: TransformersBackend):
    """The random tiny model never writes JSON by itself; with the critique schema every sample is a complete
    JSON object the schema accepts (xgrammar's mask, as the vllm engine's guided decoding), ending with EOS."""
    import json

    import jsonschema

    from amc.critique_format import parse_json

    request = critique_request("c", n=3, max_tokens=400, temperature=1.0, seed=3)
    free = backend.generate([ask("free", n=3, max_tokens=40, temperature=1.0, seed=3)])[0]
    assert not any(c.text.lstrip().startswith("{") for c in free.completions)
    mixed = backend.generate([ask("free", n=3, max_tokens=40, temperature=1.0, seed=3), request])
    assert texts(mixed[0]) == texts(free)  # an unconstrained row in the same batch is not touched
    response = mixed[1]
    assert response.ok and len(response.completions) == 3
    for c in response.completions:
        assert c.finish_reason == "stop", c.text
        obj = json.loads(c.text, strict=False)  # xgrammar, like vLLM, lets raw control characters into strings
        jsonschema.validate(obj, request.response_schema)
        assert "\n" not in c.text.replace(obj["final_explanation"], "")  # no free whitespace between tokens
        parsed = parse_json(c.text, ["2 + 2 = 4.", "4 * 3 = 13."])
        assert parsed.status != "failed" and parsed.final_verdict is not None
    greedy = [backend.generate([critique_request("g", max_tokens=400, temperature=0.0)])[0] for _ in range(2)]
    assert texts(greedy[0]) == texts(greedy[1])
    cut = backend.generate([critique_request("cut", max_tokens=6, temperature=0.0)])[0].completions[0]
    assert cut.finish_reason == "length" and cut.completion_tokens == 6 and cut.text.startswith("{")


def test_a_response_schema_without_xgrammar_fails_that_request_with_the_reason(tiny_model, monkeypatch):
    import sys

    b = TransformersBackend(ModelConfig(engine="transformers", model=str(tiny_model), dtype="float32"))
    try:
        monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar raises ImportError
        out = b.generate([critique_request("c", max_tokens=8), ask("plain", max_tokens=4)])
        assert not out[0].ok and "xgrammar" in out[0].error and "response schema" in out[0].error
        assert out[1].ok
    finally:
        b.close()
