"""Requests the engine tests send (shared by the transformers and vLLM test modules)."""

from __future__ import annotations

from amc.backends import GenerationRequest, Message, SamplingParams

QUESTION = "Ann has 12 apples and buys 30 more. How many apples does Ann have now?"
PARTIAL = "Step 1: 12 + 30 ="


def ask(rid: str, content: str = QUESTION, **params) -> GenerationRequest:
    return GenerationRequest(
        id=rid, role="actor", messages=[Message(role="user", content=content)], params=SamplingParams(**params)
    )


def continue_partial(rid: str, **params) -> GenerationRequest:
    """A request to continue a partial assistant message (how resampling from a step asks)."""
    return GenerationRequest(
        id=rid,
        role="actor",
        continue_final_message=True,
        params=SamplingParams(**params),
        messages=[Message(role="user", content=QUESTION), Message(role="assistant", content=PARTIAL)],
    )
