"""Reference-answer extraction for the source loaders: GSM8K's ``#### answer`` and MATH's last ``\\boxed{}``.

Private stand-ins for ``amc.answers.reference_answer``, kept here so that loading problems does not wait on the
answers module; they are meant to be merged into it. Both return ``None`` when no answer can be extracted, so the
caller decides how to report it (the loaders raise an ``InputError`` naming the row).
"""

from __future__ import annotations

_BOXED = "\\boxed"


def split_gsm8k(text: str) -> tuple[str, str | None]:
    """Split a GSM8K answer field into (solution, answer).

    The answer is the text after the last ``####`` with thousands separators removed ("1,000" -> "1000"), because
    GSM8K writes some answers with commas and graders compare numbers. The solution keeps its calculator notes.

    >>> split_gsm8k("She has 3 + 4 = <<3+4=7>>7 apples.\\n#### 7")
    ('She has 3 + 4 = <<3+4=7>>7 apples.', '7')
    """
    solution, sep, tail = text.rpartition("####")
    if not sep:
        return text.strip(), None
    answer = tail.replace(",", "").strip()
    return solution.strip(), answer or None


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` in ``text``, with nested braces kept balanced; ``None`` if absent.

    Only the last box counts: MATH solutions sometimes box intermediate results, and the final answer comes last.
    The brace-less form ``\\boxed 5`` that some MATH solutions use is read up to the closing ``$`` or line end.
    An unclosed box (a truncated solution) gives ``None`` rather than a guess.

    >>> last_boxed("so $x = \\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    """
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    i = start + len(_BOXED)
    if text.startswith(" ", i) and not text[i:].lstrip(" ").startswith("{"):
        rest = text[i:].lstrip(" ")
        end = min((k for k in (rest.find("$"), rest.find("\n")) if k >= 0), default=len(rest))
        return rest[:end].strip() or None
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    depth = 0
    j = i
    while j < len(text):
        ch = text[j]
        if ch == "\\":
            # An escaped brace (\{ or \}) is a literal set brace, not a group delimiter.
            j += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip() or None
        j += 1
    return None
