"""Teach a tiny test model a pipeline's output formats, offline, in seconds.

A random tiny model writes noise: it never stops, never states an answer, never writes a critique that parses, so
a pipeline test on a real engine only proves the plumbing. :func:`record_sim_answers` builds a pipeline on the
offline ``sim`` stand-in and keeps every request it sent with the answers it got; :func:`teach` then trains a tiny
model on exactly those (prompt, answer) pairs, the answer followed by the end-of-turn token, with the loss on the
answer only. The taught model, run by a real engine on the same pipeline, sees the same prompts and answers them
the way the sim did: it stops, states answers and writes critiques that parse, so every stage makes requests and
produces rows.

>>> pairs = record_sim_answers(cfg)  # doctest: +SKIP
>>> teach(build_tiny_llama(tmp / "tiny"), pairs, tmp / "taught", steps=200)  # doctest: +SKIP
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amc.backends.base import GenerationRequest


@contextmanager
def _recording() -> Iterator[list[tuple[GenerationRequest, list[str]]]]:
    from amc.backends.sim import SimBackend

    seen: list[tuple[GenerationRequest, list[str]]] = []
    original = SimBackend.generate

    def generate(self: SimBackend, requests: list[GenerationRequest]) -> list[Any]:
        responses = original(self, requests)
        for req, resp in zip(requests, responses, strict=True):
            seen.append((req, [c.text for c in resp.completions if c.finish_reason == "stop"]))
        return responses

    SimBackend.generate = generate  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        SimBackend.generate = original  # type: ignore[method-assign]


def record_sim_answers(cfg: Any, until: str = "filter") -> list[tuple[GenerationRequest, str]]:
    """Build ``cfg`` (every model block on the sim engine, in-process executor) and return each request it sent
    with each answer the sim gave, without repeats."""
    from amc.engine.runner import Runner

    with _recording() as seen:
        Runner(cfg, show_progress=False).build(until)
    pairs: dict[tuple[str, str], tuple[GenerationRequest, str]] = {}
    for req, texts in seen:
        for text in texts:
            pairs.setdefault((req.model_dump_json(include={"messages", "continue_final_message"}), text), (req, text))
    return list(pairs.values())


def teach(
    model_dir: str | Path,
    pairs: list[tuple[GenerationRequest, str]],
    out_dir: str | Path,
    *,
    steps: int = 200,
    batch_size: int = 8,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> tuple[Path, list[float]]:
    """Train the model in ``model_dir`` on (request, answer) pairs and save it to ``out_dir``.

    The prompt is rendered the way the engines render it (chat template, continuation of a partial assistant turn
    where the request asks for one); the target is the answer and the end-of-turn token. Returns the folder and
    the loss of each step (mean over answer tokens).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from amc.backends._common import encode_prompt, render_chat

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    eos = tokenizer.eos_token_id
    examples = []
    for req, text in pairs:
        prompt = encode_prompt(tokenizer, render_chat(tokenizer, req))
        answer = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        examples.append((prompt + answer, [-100] * len(prompt) + answer))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    losses: list[float] = []
    model.train()
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            more = list(range(len(examples)))
            rng.shuffle(more)
            order += more
        batch = [examples[order.pop()] for _ in range(min(batch_size, len(examples)))]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for k, (ids, lab) in enumerate(batch):  # right padding: positions match the unpadded prompt
            input_ids[k, : len(ids)] = torch.tensor(ids)
            labels[k, : len(lab)] = torch.tensor(lab)
            attention[k, : len(ids)] = 1
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    model.eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out, losses
