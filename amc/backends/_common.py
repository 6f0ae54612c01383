"""Helpers the real engines share: chat rendering, prefix ordering, stop strings, error responses.

Kept free of heavy imports: the tokenizer is passed in, never imported here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from amc.backends.base import Completion, GenerationRequest, GenerationResponse
from amc.redact import redact_secrets

log = logging.getLogger(__name__)

# Used only when a model ships no chat template (a base model): plain "role: content" turns.
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}"
    "{% if not loop.last %}{{ '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '\n\nAssistant: ' }}{% endif %}"
)

MAX_ERROR_CHARS = 500


def messages_as_dicts(request: GenerationRequest) -> list[dict[str, str]]:
    """The request's messages as the plain dicts chat templates and HTTP APIs take."""
    return [{"role": m.role, "content": m.content} for m in request.messages]


def render_chat(tokenizer: Any, request: GenerationRequest) -> str:
    """Render a request's messages with the tokenizer's chat template, as the text the model sees.

    With ``continue_final_message`` the last (assistant) message is left open, so the model continues it instead of
    starting a new turn: the template is rendered with ``add_generation_prompt=False,
    continue_final_message=True``. A tokenizer without a chat template gets a plain "Role: content" rendering.
    """
    messages = messages_as_dicts(request)
    cont = request.continue_final_message
    if cont and (not messages or messages[-1]["role"] != "assistant"):
        raise ValueError("continue_final_message needs a final assistant message to continue")
    template = None
    if not getattr(tokenizer, "chat_template", None):
        log.warning("tokenizer has no chat template; using a plain 'Role: content' rendering")
        template = FALLBACK_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        tokenize=False,
        add_generation_prompt=not cont,
        continue_final_message=cont,
    )


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered chat. No special tokens are added: the template already wrote BOS where it
    belongs, and a second one would change the model's input."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode_prompts(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of many rendered chats in one batched tokenizer call (see :func:`encode_prompt`)."""
    if not texts:
        return []
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def prefix_order(prompts: Sequence[Sequence[int] | str]) -> list[int]:
    """Indices of ``prompts`` in an order where prompts sharing a prefix sit next to each other.

    Sorting lexicographically groups every shared prefix into one run, so an engine with a prefix cache computes the
    common part once and finds it still cached for the neighbours. Stable, so equal prompts keep their order.

    >>> prefix_order([[1, 2, 9], [5], [1, 2, 3]])
    [2, 0, 1]
    """
    keys = [p if isinstance(p, str) else tuple(p) for p in prompts]
    return sorted(range(len(keys)), key=keys.__getitem__)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; return (text, whether a stop string was found).

    >>> cut_at_stop("a + b\\n\\nNext", ["\\n\\n"])
    ('a + b', True)
    """
    cut = min((i for s in stops if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def describe_error(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """A one-line, bounded description of an exception, with any secret replaced by '***'."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return redact(text, secrets)[:MAX_ERROR_CHARS]


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every non-empty secret replaced by '***' (and credential-looking strings redacted)."""
    return redact_secrets(text, secrets)


def error_response(request: GenerationRequest, engine: str, model: str, message: str) -> GenerationResponse:
    """The response for a request that failed: no completions, ``error`` set."""
    return GenerationResponse(request_id=request.id, completions=[], error=message, engine=engine, model=model)


def ok_response(
    request: GenerationRequest, engine: str, model: str, completions: list[Completion]
) -> GenerationResponse:
    return GenerationResponse(request_id=request.id, completions=completions, engine=engine, model=model)
