"""A tiny Llama built offline: a BPE tokenizer trained on generated math text plus random weights.

Good for tests, benchmarks and smoke runs of every engine (transformers, vLLM offline and server) and of the SFT
trainer: it loads with ``AutoTokenizer``/``AutoModelForCausalLM``, has a chat template whose assistant turns are
marked with ``{% generation %}`` (so TRL's ``assistant_only_loss`` works) and a head size of 32, the least vLLM's
CPU backend accepts. Nothing is downloaded. Its output is gibberish made of math-ish words, which is all a test of
the plumbing needs.

>>> path = build_tiny_llama(tmp_path / "tiny")  # doctest: +SKIP
>>> AutoModelForCausalLM.from_pretrained(path)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BOS, EOS, PAD = "<s>", "</s>", "<pad>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# Every turn ends with EOS, so generation stops at the end of an assistant turn. The assistant's content and its
# EOS sit inside {% generation %} so that only they count as training targets. `continue_final_message` works
# because the final message's content appears verbatim in the rendering.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}"
    "{{ message['content'] + eos_token }}"
    "{% endif %}"
    "{{ '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

_NAMES = ["Ann", "Ben", "Carla", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo"]
_ITEMS = ["apples", "pens", "books", "marbles", "cookies", "stamps", "coins", "eggs", "cards", "shells"]
_VERBS = ["buys", "sells", "finds", "gives away", "eats", "loses", "collects", "bakes"]


def math_sentences(count: int = 3000, seed: int = 0) -> Iterator[str]:
    """Yield ``count`` short math-flavoured sentences (questions, steps, answers, critique lines), reproducibly."""
    rng = random.Random(seed)
    for i in range(count):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        name, item, verb = rng.choice(_NAMES), rng.choice(_ITEMS), rng.choice(_VERBS)
        kind = i % 6
        if kind == 0:
            yield f"{name} has {a} {item} and {verb} {b} more. How many {item} does {name} have now?"
        elif kind == 1:
            yield f"Step {rng.randint(1, 6)}: {a} + {b} = {a + b}, so {name} has {a + b} {item}."
        elif kind == 2:
            yield f"Step {rng.randint(1, 6)}: {a} * {b} = {a * b}. Then {a * b} - {b} = {a * b - b}."
        elif kind == 3:
            yield f"The answer is \\boxed{{{a * b + a}}}. #### {a * b + a}"
        elif kind == 4:
            verdict = rng.choice(["Correct", "Wrong"])
            yield f"Step sentence: {a} / {b} = {a / b:.2f}\nCorrectness of the step: {verdict}"
        else:
            yield f"Explanation: {name} {verb} {a} {item}, which is {a - b} fewer than {b} minus zero."


def _train_tokenizer(vocab_size: int, seed: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    # Byte-level: any text round-trips (no unknown tokens), which detokenizers in vLLM and transformers rely on.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(math_sentences(seed=seed), trainer=trainer)
    return tok


def build_tiny_llama(
    folder: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    max_position_embeddings: int = 512,
    seed: int = 0,
) -> Path:
    """Build and save a tiny Llama (random float32 weights) with its tokenizer in ``folder``; return the path.

    Defaults: hidden 64, 2 layers, 2 heads of size 32. Takes well under a second; needs ``tokenizers``,
    ``transformers`` and ``torch``. The same ``seed`` gives the same weights and vocabulary.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer: Any = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(vocab_size, seed),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        model_max_length=max_position_embeddings,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    ids = {name: int(tokenizer.convert_tokens_to_ids(name)) for name in (BOS, EOS, PAD)}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        head_dim=hidden_size // num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
        tie_word_embeddings=False,
    )
    config.dtype = torch.float32
    torch.manual_seed(seed)
    model: Any = LlamaForCausalLM(config)
    model = model.to(torch.float32)
    # Plain greedy/sampling defaults only: no temperature or top_p that engines would pick up as the model's own.
    model.generation_config = GenerationConfig(bos_token_id=ids[BOS], eos_token_id=ids[EOS], pad_token_id=ids[PAD])
    model.save_pretrained(path)
    (path / "amc_tiny_model.json").write_text(
        json.dumps({"builder": "amc.testing.build_tiny_llama", "seed": seed, "vocab_size": len(tokenizer)}) + "\n",
        encoding="utf-8",
    )
    return path
