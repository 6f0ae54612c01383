"""What can be kept of a JSON critique that was cut off (by ``max_tokens``) before its object closed.

:func:`amc.critique_format.parse_json` uses these when an output ends inside the critique object: the step objects
completed before the cut are kept, and the final verdict when it was written. A complete object that is merely
invalid (a trailing comma) is not "cut off" and gets no rescue.

>>> salvage_object('{"steps": [{"step": "a", "correct": true, "explanation": "x"}, {"step": "b", "cor')
{'steps': [{'step': 'a', 'correct': True, 'explanation': 'x'}]}
>>> ends_inside_object('{"steps": [{"step": "a", "correct": true, "explanation": "x"},], "final_answer_correct": 1}')
False
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

_STEPS_KEY = re.compile(r'"steps"\s*:\s*\[')
_FINAL_KEY = re.compile(r'"final_answer_correct"\s*:\s*(true|false)')
_FINAL_TEXT_KEY = re.compile(r'"final_explanation"\s*:\s*(?=")')


def ends_inside_object(raw: Any) -> bool:
    """True when the text ends inside the critique object (an output cut off early): from its ``"steps": [`` on,
    a bracket or a string is still open at the end. A complete but invalid object (a trailing comma) is not."""
    if not isinstance(raw, str) or (start := _STEPS_KEY.search(raw)) is None:
        return False
    depth, in_string, escaped = 2, False, False  # inside the object and its steps array
    for ch in raw[start.end() :]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return False
    return True


def salvage_object(raw: str) -> dict[str, Any] | None:
    """The completed parts of a cut-off critique object: each step object that decodes whole, then the final verdict
    and explanation when they were written. None when there is no ``"steps": [`` to start from."""
    start = _STEPS_KEY.search(raw)
    if start is None:
        return None
    decoder, items, pos = json.JSONDecoder(), [], start.end()
    while True:
        pos = len(raw) - len(raw[pos:].lstrip(" \t\r\n,"))
        if pos >= len(raw) or raw[pos] != "{":
            break
        try:
            item, pos = decoder.raw_decode(raw, pos)
        except ValueError:  # the step object that was being written when the output stopped
            break
        items.append(item)
    obj: dict[str, Any] = {"steps": items}
    rest = raw[pos:]
    if rest.lstrip().startswith("]"):
        if m := _FINAL_KEY.search(rest):
            obj["final_answer_correct"] = m.group(1) == "true"
        if m := _FINAL_TEXT_KEY.search(rest):
            with contextlib.suppress(ValueError):  # cut off inside the final explanation
                obj["final_explanation"] = decoder.raw_decode(rest, m.end())[0]
    return obj
