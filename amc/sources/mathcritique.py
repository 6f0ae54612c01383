"""Reference critiques from the original AutoMathCritique release (alpaca-format records).

``extract_mathcritique_record`` splits one record into the question, the solution steps and the critique, so the
release's critiques can be read with :func:`amc.critique_format.parse_text` and compared with ours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from amc.steps import split

_MC_PARTS = [  # (marker, what follows it) in the order the release's `instruction` holds them
    ("\n\nAssistant:", "the solution"),
    ("<|end_of_text|>", "the critique turn"),
    ("I have made a step-by-step critic for your solution.", "the critique request"),
    ("\n\n", "the critique"),  # the request paragraph ends at the first blank line
]
_MC_PRIMER = "Let's break it down step by step:"
_MC_FORMAT_REQUEST = re.compile(r"\s*Please also give your final number in the format of '.*'\.?\s*$", re.S)


def extract_mathcritique_record(rec: Mapping[str, Any]) -> tuple[str, list[str], str]:
    """Split a record of the AutoMathCritique release (alpaca format) into (question, solution steps, critique).

    The release packs everything into ``instruction``: ``<question> Please also give your final number ...``,
    ``Assistant:<solution><|end_of_text|>``, then ``Human: I have made a step-by-step critic for your solution.
    <request>`` and the critique after a blank line. The answer-format request is prompt boilerplate and the
    primer "Let's break it down step by step:" was forced on the actor, so neither is kept; steps are the
    non-empty lines of the solution (:func:`amc.steps.split`), verbatim (GSM8K calculator notes included).
    Raises ValueError naming the missing part, so that a bad file fails fast.
    """
    rest = rec.get("instruction") if isinstance(rec, Mapping) else None
    if not isinstance(rest, str):
        raise ValueError("field 'instruction' is missing or not text")
    parts = []
    for marker, what in _MC_PARTS:
        before, found, rest = rest.partition(marker)
        if not found:
            raise ValueError(f"field 'instruction': no {marker!r} before {what}")
        parts.append(before)
    if not rest.strip():
        raise ValueError("field 'instruction': empty critique")
    question, solution = _MC_FORMAT_REQUEST.sub("", parts[0]).strip(), parts[1].strip()
    if solution.startswith(_MC_PRIMER):
        solution = solution[len(_MC_PRIMER) :]
    return question, split(solution), rest.strip()
