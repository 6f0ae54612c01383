"""Steps of a solution, and the arithmetic they claim.

A step is one non-empty line (the AutoMathCritique rule), for actor output, annotator input and critic prompts
alike. ``claims`` finds the equations a step states between numbers ("3 * 4 = 12", "\\frac{1}{3} \\times 18 = 6",
"$3.5 * 4,000 = $14,000", GSM8K calculator notes "<<3*4=12>>") and checks each with exact sympy arithmetic, so
``first_false_arithmetic`` can point at the first step that miscalculates without any model.

It errs towards silence: an equation touching a variable ("2x + 3 = 7"), a word it cannot read, or an expression
too big to evaluate cheaply (huge powers, factorials) is no claim at all, because a false alarm costs more than a
miss when the checker labels or filters data. Evaluation is bounded by cheap guards and a cooperative deadline,
never by signals, so it is safe in threads.

>>> [c.true for c in claims("She pays 3 x $4.50 = $13.50, then 13.50 + 2 = 16.")]
[True, False]
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace

import sympy

__all__ = ["split", "join", "Claim", "Number", "claims", "numbers", "operators", "evaluate", "first_false_arithmetic"]


def split(text: str) -> list[str]:
    """One step per non-empty line, each stripped.

    >>> split("First, 2 + 2 = 4.\\n\\n  So the answer is 4. ")
    ['First, 2 + 2 = 4.', 'So the answer is 4.']
    """
    return [line.strip() for line in text.splitlines() if line.strip()]


def join(steps: list[str]) -> str:
    """The inverse of :func:`split` for stripped, non-empty steps: one per line."""
    return "\n".join(steps)


# ------------------------------------------------------------------------------------------------ tokens


@dataclass
class _Tok:
    kind: str  # NUM OP LP RP EQ FACT FRAC SQRT SUP WORD VAR BREAK NOPEN NCLOSE; SKIP ones are dropped
    text: str
    start: int
    end: int  # NUM: end of the digits (what a perturbation rewrites); ``stop`` includes "%", "...", "million"
    stop: int = -1
    op: str = ""  # normalised operator: + - * / ^
    value: sympy.Rational | None = None  # NUM: the literal as written; SUP: the exponent
    percent: bool = False
    scale: int = 1  # "2 million" -> 10**6
    decimals: int = 0
    approx: bool = False  # "3.33..." states a rounded value
    grouped: bool = False  # written with thousands separators
    literal: bool = True  # False for "\frac12" and "0.\overline{3}", which no perturbation should rewrite
    spaced: bool = True  # whitespace before it: a letter glued to a number is a variable ("2x")
    note: int = -1  # index of the GSM8K calculator note holding it; -1 when visible
    cmd: bool = False  # BREAK that is a LaTeX command or identifier-like ("\pi", "_")
    unit: str = ""  # NUM: the unit word dropped after it ("apples")


_NUM = r"(?:\d{1,3}(?:(?:,|\{,\}|[  ](?=\d{3}(?![\d,.])))\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_TOKEN_RE = re.compile(
    r"(?P<nopen><<)|(?P<nclose>>>)|(?P<time>(?<!\d)(?:[01]?\d|2[0-3]):[0-5]\d(?!\d))"
    r"|(?P<text>\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\})"
    r"|(?P<frac12>\\[dt]?frac\s*(?P<fa>\d)\s*(?P<fb>\d))|(?P<frac>\\[dt]?frac)|(?P<sqrt>\\sqrt(?!\s*\[))"
    r"|(?P<mul>\\times|\\cdot|\\ast|[*×∗·⋅])|(?P<div>\\div|[/÷])"
    r"|(?P<skip>\\(?:left|right|[bB]igg?[lr]?)|\\[,;:! ]|\\q?quad|\\displaystyle|\\boxed|\\mathbf|\\bf|\\\$|\$|&"
    r"|\s+|(?<![^\n])[ \t]*[-*•][ \t])"  # a bullet "- " at a line start is no minus
    r"|(?P<delim>\\[()\[\]])|(?P<cmd>\\[A-Za-z]+|\\\\)|(?P<rel><=|>=|!=|==|=>|->|<-|[≈≠≤≥<>~≡])"
    r"|(?P<num>" + _NUM + r")(?P<rep>\.?\\overline\s*\{(?P<repd>\d+)\})?(?P<dots>\.\.\.|…|\s*\\[lc]?dots)?"
    r"(?P<pct>\s*(?:\\%|%)|\s+percent\b)?(?P<scale>\s+(?:thousand|million|billion)\b)?"
    r"|(?P<sup>[⁰¹²³⁴⁵⁶⁷⁸⁹]+)|(?P<pow>\*\*|\^)|(?P<plus>\+)|(?P<minus>[-−–])"
    r"|(?P<eq>=)|(?P<fact>!)|(?P<lp>[(\[{])|(?P<rp>[)\]}])|(?P<word>[A-Za-z]+(?:'[A-Za-z]+)?)|(?P<other>.)",
    re.DOTALL,
)
_SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9}
_OPS = {"mul": "*", "div": "/", "pow": "^", "plus": "+", "minus": "-"}
_WORD_OPS = {"x": "*", "X": "*", "times": "*", "plus": "+", "minus": "-"}
# Words that are never units between a number and an operator ("2 times the number + 3" is not "2 + 3").
_STOP = {
    "the", "a", "an", "of", "and", "or", "to", "is", "are", "was", "were", "be", "per", "each", "more", "less",
    "than", "that", "this", "these", "it", "its", "in", "on", "for", "by", "from", "with", "as", "at", "total",
    "number", "times", "so", "then", "which", "who", "what", "if", "not", "all", "already", "up",
    "because", "since", "thus", "hence", "therefore", "but", "when", "after", "before", "while", "where",
}
_GLUED_UNITS = {
    "cm", "mm", "km", "kg", "mg", "lb", "lbs", "oz", "ft", "mi", "ml", "hr", "hrs", "min", "sec", "pm", "am", "mph",
    "kph", "kb", "mb", "gb",
}
# A word joining its neighbour to the expression after it: "1 and 1/4 cup = ..." is not "1/4 = ...".
_CONNECTIVES = {"and", "plus", "minus", "times", "by", "of", "over", "than", "with"}
_FUNCS = {
    "\\sin", "\\cos", "\\tan", "\\cot", "\\sec", "\\csc", "\\log", "\\ln", "\\lg", "\\exp", "\\max", "\\min",
    "\\gcd", "\\lcm", "\\det", "\\binom", "\\arcsin", "\\arccos", "\\arctan", "\\overline", "\\bar", "\\hat", "\\vec",
    "\\pm", "\\mp", "\\mathbb", "\\lfloor", "\\lceil", "\\pmod", "\\bmod", "\\mod", "\\operatorname",
}
_ARITH = {"NUM", "OP", "LP", "RP", "FACT", "FRAC", "SQRT", "SUP"}
_MAX_RUN = 120  # tokens on one side of "=": longer runs are not hand-written arithmetic


def _digits(lit: str) -> str:
    return re.sub(r"\{,\}|[,  ]", "", lit)  # thousands separators: "1,000", "1{,}000", "1 000"


def _tokenize(text: str, deadline: float = float("inf")) -> list[_Tok]:
    """Tokens of a step with spans into it; LaTeX spacing, ``$`` and ``\\left`` vanish. Stops at ``deadline``."""
    toks: list[_Tok] = []
    note, n_notes, prev_end = -1, 0, -1
    for m in _TOKEN_RE.finditer(text):
        if len(toks) % 256 == 255 and time.monotonic() > deadline:
            break
        kind, s, e, t = m.lastgroup, m.start(), m.end(), m.group(0)
        kind = "num" if m.group("num") is not None else kind
        if kind == "skip" or (kind == "text" and not re.search(r"[A-Za-z0-9]", t[t.index("{") :])):
            continue
        tok = _Tok("BREAK", t, s, e, spaced=s != prev_end, note=note)
        prev_end = e
        if kind == "nopen":
            note, n_notes = n_notes, n_notes + 1
            tok.kind, tok.note = "NOPEN", note
        elif kind == "nclose":
            tok.kind, note = "NCLOSE", -1
        elif kind == "num" and len(m.group("num")) > 40:
            pass  # absurdly long literals are data, not arithmetic (and int() refuses > 4300 digits)
        elif kind == "num":
            lit = m.group("num")
            tok = replace(tok, kind="NUM", text=lit, end=m.end("num"), stop=e, percent=m.group("pct") is not None,
                          value=sympy.Rational(_digits(lit)), grouped=len(lit) > len(_digits(lit)),
                          decimals=len(lit.split(".")[1]) if "." in lit else 0, approx=m.group("dots") is not None)
            if m.group("rep"):  # 0.1\overline{6} is 1/6 exactly
                digits, r = lit.replace(",", "").replace(".", ""), m.group("repd")
                tok.value = sympy.Rational(int(digits + r) - int(digits), 10**tok.decimals * (10 ** len(r) - 1))
                tok.literal, tok.decimals = False, 0
            if m.group("scale"):
                tok.scale = _SCALES[m.group("scale").strip()]
            if re.match(r"0\d", lit):
                tok.kind = "BREAK"  # "0900" is a clock time
        elif kind == "frac12":
            if m.group("fb") != "0":
                tok.kind, tok.value, tok.literal = "NUM", sympy.Rational(int(m.group("fa")), int(m.group("fb"))), False
        elif kind in _OPS:
            tok.kind, tok.op = "OP", _OPS[kind]
        elif kind in ("eq", "fact", "lp", "rp", "frac", "sqrt"):
            tok.kind = kind.upper()
        elif kind == "sup":
            tok.kind, tok.value = "SUP", sympy.Integer(int(t.translate(str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789"))))
        elif kind in ("word", "text"):
            tok.kind = "WORD"
        elif kind == "cmd" or kind == "other" and t in "_'|":
            tok.cmd = True
        toks.append(tok)
    return toks


def _unit(t: _Tok) -> bool:
    word = t.text[t.text.find("{") + 1 : -1].strip() if t.text.startswith("\\") else t.text
    return t.kind == "WORD" and len(word) > 1 and word.lower() not in _STOP  # one letter is a variable


def _word_group(toks: list[_Tok], j: int) -> int | None:
    """Index of the ")" closing a spaced parenthesis of words only, like "(from snack)"; ``None`` otherwise."""
    for k in range(j + 1, min(len(toks), j + 16)):
        if toks[k].text == ")":
            return k if k > j + 1 and toks[j].spaced else None
        if toks[k].kind not in ("WORD", "BREAK"):
            return None
    return None


def _words_to_ops(toks: list[_Tok]) -> list[_Tok]:
    """Read 'x', 'times', 'of' between numbers as operators, glued letters as variables, and drop unit words."""
    def kind(i: int) -> str:
        return toks[i].kind if 0 <= i < len(toks) else "END"

    for i, t in enumerate(toks):
        if t.kind != "WORD":
            continue
        b = i - 1
        while b >= i - 2 and b >= 0 and _unit(toks[b]):
            b -= 1  # "60 students x 2/3": look past unit words for the operand
        operand_before, operand_after = kind(b) in ("NUM", "RP", "FACT"), kind(i + 1) in ("NUM", "LP", "FRAC", "SQRT")
        if t.text in _WORD_OPS and operand_before and operand_after and t.spaced == toks[i + 1].spaced:
            t.kind, t.op = "OP", _WORD_OPS[t.text]
        elif t.text == "of" and operand_after and (kind(i - 1) == "RP" or kind(i - 1) == "NUM" and (
                toks[i - 1].percent or kind(i - 2) == "OP" and toks[i - 2].op == "/")):
            t.kind, t.op = "OP", "*"  # "20% of 50", "1/3 of 18", "\frac{1}{3} of 18"
        elif not t.spaced and kind(i - 1) in ("NUM", "RP") and t.text.lower() not in _GLUED_UNITS:
            t.kind = "VAR"  # "2x", "3ab", "(a+b)c", "1st"; but "5cm" and "3pm" are units
    # Unit words: "5 apples + 3 apples = 8", "2 \text{ books} \times 2", "$15/student * 3", "7995 (total cookies)
    # - 2595". Up to 2 words, rates and spaced word-only parentheses after a number are dropped when an operator,
    # "=" or ")" follows them; otherwise they stay as a barrier.
    i = 0
    while i < len(toks):
        j, parts, words, unit = i + 1, 0, 0, ""
        while toks[i].kind == "NUM" and j < len(toks) and parts < 4:
            if _unit(toks[j]) and words < 2:
                unit = unit or toks[j].text.lower().rstrip("s")
                j, words = j + 1, words + 1
            elif toks[j].op == "/" and j + 1 < len(toks) and _unit(toks[j + 1]):
                j += 2
            elif toks[j].text == "(" and (close := _word_group(toks, j)):
                j = close + 1
            else:
                break
            parts += 1
        end = toks[j] if j < len(toks) else None
        if parts and end is not None and (end.kind in ("EQ", "RP") or end.kind == "OP" and end.op != "^"):
            toks[i].unit = unit
            for k in range(i + 1, j):
                toks[k].kind = "SKIP"
        i = max(j, i + 1)
    return [t for t in toks if t.kind != "SKIP"]


# ------------------------------------------------------------------------------------------------ parser


class _Invalid(Exception):
    """Tokens are not one well-formed arithmetic expression."""


class _Refused(Exception):
    """Well-formed but too costly to evaluate (huge power or factorial): treated as no claim."""


class _Parser:
    """Recursive descent over arithmetic tokens with exact sympy values and cheap size guards.

    ``raw`` reads "25%" as 25 instead of 0.25: sloppy writing ("30% + 20% = 50%") is read both ways.
    """

    def __init__(self, toks: list[_Tok], raw: bool):
        self.toks, self.i, self.raw, self.ops = toks, 0, raw, 0

    def peek(self, k: int = 0) -> _Tok | None:
        return self.toks[self.i + k] if self.i + k < len(self.toks) else None

    def parse(self) -> sympy.Expr:
        value = self.expr()
        if self.i != len(self.toks):
            raise _Invalid
        return value

    def expr(self) -> sympy.Expr:
        start = self.i
        acc = self.term()
        pct_left = any(t.percent for t in self.toks[start : self.i])
        while (t := self.peek()) is not None and t.kind == "OP" and t.op in "+-":
            self.i += 1
            at, rhs = self.i, self.term()
            self.ops += 1
            if self.i == at + 1 and self.toks[at].percent and not pct_left and not self.raw:
                acc = acc * (1 + rhs if t.op == "+" else 1 - rhs)  # "80 - 25% = 60": a reduction by 25%
            else:
                acc = acc + rhs if t.op == "+" else acc - rhs
        return acc

    def term(self) -> sympy.Expr:
        acc = self.unary()
        while (t := self.peek()) is not None:
            if t.kind == "OP" and t.op in "*/":
                self.i += 1
                rhs = self.unary()
                if t.op == "/" and rhs == 0:
                    raise _Invalid
                acc = acc * rhs if t.op == "*" else acc / rhs
            elif t.kind in ("FRAC", "SQRT") or t.kind == "LP" and t.text in "([":
                acc = acc * self.unary()  # "2(3 + 4)", "(2)(3)", "3\sqrt{2}"
            else:
                break
            self.ops += 1
        return acc

    def unary(self) -> sympy.Expr:
        t = self.peek()
        if t is not None and t.kind == "OP" and t.op == "-":
            self.i += 1
            return -self.unary()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        t = self.peek()
        if t is not None and (t.kind == "SUP" or t.kind == "OP" and t.op == "^"):
            self.i += 1
            self.ops += 1
            return _guarded_pow(base, t.value if t.kind == "SUP" else self.unary())
        return base

    def postfix(self) -> sympy.Expr:
        value = self.atom()
        while (t := self.peek()) is not None and t.kind == "FACT":
            self.i += 1
            self.ops += 1
            if not (value.is_Integer and 0 <= value <= 1000):
                raise _Refused
            value = sympy.factorial(value)
        return value

    def number(self, t: _Tok) -> sympy.Expr:
        value = t.value * t.scale
        return value if not t.percent or self.raw else value / 100

    def atom(self) -> sympy.Expr:
        t = self.peek()
        if t is None:
            raise _Invalid
        self.i += 1
        if t.kind == "NUM":
            value = self.number(t)
            n1, n2, n3 = self.peek(), self.peek(1), self.peek(2)
            whole = t.value.is_Integer and not t.percent
            if whole and n1 is not None and n1.kind == "FRAC" and not n1.spaced:
                self.ops += 1
                return value + self.atom()  # mixed number "2\\frac{1}{2}"
            if whole and n1 and n2 and n3 and n1.kind == n3.kind == "NUM" and n2.op == "/" and not n2.spaced \
                    and not n3.spaced and n1.value.is_Integer and n3.value.is_Integer and 0 < n1.value < n3.value:
                self.i += 3
                return value + n1.value / n3.value  # mixed number "1 1/2"
            if n1 and n2 and n1.op == "/" and not n1.spaced and not n2.spaced and n2.kind == "NUM" and n2.value:
                self.i += 2  # a glued fraction binds tighter than a spaced "/": "25 / 1/3 = 75"
                self.ops += 1
                return value / self.number(n2)
            return value
        if t.kind == "LP":
            value = self.expr()
            if (close := self.peek()) is None or close.kind != "RP":
                raise _Invalid
            self.i += 1
            return value
        if t.kind == "FRAC":
            num, den = self.group(), self.group()
            if den == 0:
                raise _Invalid
            self.ops += 1
            return num / den
        if t.kind == "SQRT":
            inner = self.group()
            if inner.is_negative:
                raise _Invalid
            self.ops += 1
            return sympy.sqrt(inner)
        raise _Invalid

    def group(self) -> sympy.Expr:
        """A LaTeX argument: "{...}" or a single digit ("\\frac12" is tokenised apart, so NUM is rare here)."""
        t = self.peek()
        if t is not None and t.kind == "NUM" and not t.percent:
            self.i += 1
            return t.value * t.scale
        if t is None or t.kind != "LP":
            raise _Invalid
        return self.atom()


def _guarded_pow(base: sympy.Expr, exp: sympy.Expr) -> sympy.Expr:
    """``base ** exp`` unless the result would be huge: rational exponents only, about 20,000 digits at most."""
    if not exp.is_Rational or exp.q > 12 or abs(exp.p) > 10_000:
        raise _Refused
    if base.is_Rational:
        if max(abs(base.p).bit_length(), base.q.bit_length()) * 0.302 * abs(exp) > 20_000:
            raise _Refused
    elif abs(exp) > 64:
        raise _Refused
    if base == 0 and exp < 0:
        raise _Invalid
    return base**exp


# ------------------------------------------------------------------------------------------------ claims

_QUOTIENT_RE = re.compile(r"remainder|quotient|\bR\s*\d|\bwhole\b|\bfull\b|\bcomplete\b|\bleft\b|leftover", re.I)
_CENTS_RE = re.compile(r"\s*(?:cents?\b|¢)")


@dataclass(frozen=True)
class Number:
    """A number literal in a step: its text, where it is, and its value as written (no % or scale applied)."""

    text: str
    span: tuple[int, int]
    value: sympy.Rational
    decimals: int
    grouped: bool
    percent: bool
    in_note: bool


@dataclass(frozen=True)
class Claim:
    """An equation a step states between numbers, and whether it holds.

    ``expr`` / ``result`` are the texts at ``expr_span`` / ``result_span`` of the step; ``span`` covers both.
    ``value`` is the left side evaluated exactly; ``stated`` is what the result says in the same units, and
    ``true`` means they agree (within the rounding the result shows: 10/3 = 3.33 is true).
    A ``simple`` result is one unsigned number literal, and then ``stated == Rational(result) * result_unit``
    (``result_unit`` is 1/100 for "25%" read as 0.25, 10**6 for "2 million"); ``percent_as_number`` says how
    a % on the left was read. A claim inside a GSM8K calculator note has ``in_note`` and ``echo_span``: the
    visible number right after the note, which states the same result.
    """

    expr: str
    result: str
    span: tuple[int, int]
    true: bool
    expr_span: tuple[int, int] = (0, 0)
    result_span: tuple[int, int] = (0, 0)
    value: sympy.Expr = field(default=sympy.Integer(0), compare=False)
    stated: sympy.Expr = field(default=sympy.Integer(0), compare=False)
    simple: bool = True
    in_note: bool = False
    echo_span: tuple[int, int] | None = None
    percent_as_number: bool = False
    result_unit: sympy.Expr = field(default=sympy.Integer(1), compare=False)


def _streams(text: str, deadline: float = float("inf")) -> list[tuple[list[_Tok], int, tuple[int, int] | None]]:
    """(tokens, note index or -1, echo span) for the visible text, where notes are transparent, and each note."""
    toks = _tokenize(text, deadline)
    out: list[tuple[list[_Tok], int, tuple[int, int] | None]] = [
        (_words_to_ops([t for t in toks if t.note < 0]), -1, None)]
    for i, t in enumerate(toks):
        if t.kind == "NCLOSE":
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            echo = (nxt.start, nxt.end) if nxt is not None and nxt.kind == "NUM" and nxt.note < 0 else None
            inner = [u for u in toks if u.note == t.note and u.kind not in ("NOPEN", "NCLOSE")]
            out.append((_words_to_ops(inner), t.note, echo))
    return out


def _glued_identifier(tok: _Tok | None, neighbour_spaced: bool) -> bool:
    """Whether ``tok`` beside an expression makes it part of something unreadable (a variable, a function)."""
    if tok is None:
        return False
    if tok.kind == "VAR" or tok.text in _FUNCS or tok.text in ("_", "'", "|"):
        return True
    return (tok.cmd or tok.kind == "WORD" and len(tok.text) == 1) and not neighbour_spaced


def _close(value: sympy.Expr, target: sympy.Expr, decimals: int, approx: bool, unit: sympy.Expr,
           rel: sympy.Expr = 0) -> bool:
    """Exact equality, or agreement within the last decimal the stated result shows (10/3 = 3.33, 2/3 = 0.67),
    or within ``rel`` (relative) when the left side holds rounded decimals itself ("(2.8284)^2 = 8")."""
    diff = value - target
    if diff == 0:
        return True
    size = abs(diff) if diff.is_Rational else abs(diff.evalf(50))
    if not diff.is_Rational and size < sympy.Float("1e-40"):
        return True  # equal irrational forms that sympy leaves apart: (3 + sqrt(5))^2 = 14 + 6 sqrt(5)
    if rel and size <= rel * abs(target):
        return True
    if decimals == 0 and not approx:
        return False
    if (value / unit * 10**decimals).is_Integer and not approx:
        return False  # the exact value fits in the digits shown, so other digits there are wrong
    return bool(size < abs(unit) * sympy.Rational(1, 10 ** min(decimals, 12)))


def _parse(toks: list[_Tok], raw: bool = False) -> tuple[sympy.Expr, int]:
    p = _Parser(toks, raw)
    return p.parse(), p.ops


def _fraction_at(stream: list[_Tok], i: int) -> bool:
    """Whether a fraction starts at ``stream[i]``: "1/4", "(2/3)", "\\frac{1}{4}" (for "1 and 1/4")."""
    i += i < len(stream) and stream[i].kind == "LP"
    return i < len(stream) and (stream[i].kind == "FRAC" or stream[i].kind == "NUM" and i + 1 < len(stream)
                                and stream[i + 1].op == "/" and not stream[i + 1].spaced)


def _left_side(stream: list[_Tok], e: int, deadline: float) -> list[_Tok] | None:
    """The expression left of the "=" at ``stream[e]``: the longest well-formed suffix of the arithmetic run
    before it ("Step 1) 3 + 4" -> "3 + 4") with at least one operation; ``None`` if it is not readable."""
    j = e
    while j > 0 and stream[j - 1].kind in _ARITH and e - j < _MAX_RUN:
        j -= 1
    if j == e or (j > 0 and stream[j - 1].kind in _ARITH):
        return None
    left = stream[j:e]
    for s in range(len(left)):
        if time.monotonic() > deadline:
            return None
        try:
            ops = _parse(left[s:])[1]
            break
        except _Invalid:
            continue
        except _Refused:
            return None
    else:
        return None
    first, before = left[s], left[s - 1] if s > 0 else (stream[j - 1] if j > 0 else None)
    if ops == 0 or before is None:
        return None if ops == 0 else left
    if before.kind in ("OP", "FRAC", "SQRT") or (s and first.kind == "OP") or (before.kind == "LP" and s >= 2):
        return None  # an expression that goes on to the left: "2x + 3 = 7", "$100+($100*(10/100) = 110"
    if before.kind == "RP" and ("}" in (before.text, first.text) or not first.spaced):
        return None  # the tail of a bigger expression: "\frac{x}{2} + 7 = 43"
    if before.kind == "NUM" and first.kind == "NUM" or _glued_identifier(before, first.spaced):
        return None  # "$100 000 x 10/100", "x_1 + 3", "2\pi + 3"
    if first.kind in ("OP", "LP") and (before.kind == "VAR" or before.cmd or before.kind == "WORD" and (
            first.op or len(before.text) == 1)):
        return None  # "f(2 + 1) = 9", "\sin(30)", "the total - 3 = 4"
    two_back = stream[j - 2] if before is stream[j - 1] and j >= 2 else None
    if before.text.lower() in _CONNECTIVES and two_back is not None and two_back.kind in ("NUM", "RP", "WORD") and (
            _fraction_at(stream, j + s) or before.text.lower() != "and"):
        return None  # "1 and 1/4 cup = 1.25 cups" is not "1/4 = 1.25"; "2 times 3 + 1 = 7" is not "3 + 1 = 7"
    return left[s:]


def _right_side(stream: list[_Tok], e: int) -> tuple[list[_Tok], int] | None:
    """(tokens, index of the first number) right of the "=" at ``stream[e]``.

    The first number may open a longer expression ("= 12 + 2 = 14" runs on) and both count; a right side that
    runs into something unreadable ("= 1.5x", "= 1 \\times x", "= 5 and 2/3") gives ``None``.
    """
    k = e + 1
    while k < len(stream) and stream[k].kind in _ARITH and k - e <= _MAX_RUN:
        k += 1
    right = stream[e + 1 : k]
    lead = next((i for i, t in enumerate(right) if t.kind != "LP"), len(right))  # "= \boxed{43000}"
    first = lead + (lead < len(right) and right[lead].op == "-")
    if first >= len(right) or right[first].kind != "NUM" or (right[0].kind == "OP" and right[0].op != "-"):
        return None
    p = len(right)
    try:
        while p > first:
            try:
                _parse(right[:p])
                break
            except _Invalid:
                p -= 1
    except _Refused:
        return None
    after = right[p] if p < len(right) else (stream[k] if k < len(stream) else None)
    goes_on = p < len(right) and after.kind != "RP" and (after.kind != "LP" or p + 1 < len(right) or not after.spaced)
    if p <= first or goes_on or _glued_identifier(after, after is None or after.spaced) or (
            after is not None and (after.kind == "OP" or after.text == "and" and _fraction_at(stream, k + 1))):
        return None
    return right[:p], first


def _judge(text: str, left: list[_Tok], right: list[_Tok], first: int) -> Claim | None:
    """Evaluate ``left`` and compare it with the first number of ``right`` or with any longer prefix of it."""
    if any(t.op in "+-" for t in left if t.kind == "OP") and len({t.unit for t in left if t.unit}) > 1:
        return None  # "4 pounds - 6 ounces = 58 ounces" converts units we do not know
    num = right[first]
    sign = -1 if first and right[first - 1].op == "-" else 1
    bases = [sympy.Rational(1, 100)] if num.percent or _CENTS_RE.match(text, num.stop) else []
    mults = [b * num.scale for b in [*bases, sympy.Integer(1)]] + ([sympy.Integer(1)] if num.scale > 1 else [])
    places = max((t.decimals for t in left if t.kind == "NUM"), default=0)
    rel = sympy.Rational(1, 10**places) if places >= 3 else 0
    default = None
    try:
        for raw in (False, True) if any(t.percent for t in left) else (False,):
            value = _parse(left, raw)[0]
            default = default or (value, raw)
            for mult in mults:
                if _close(value, sign * num.value * mult, num.decimals, num.approx, mult, rel):
                    return _make(text, left, right[: first + 1], num, True, value, sign * num.value * mult, mult, raw)
            for q in range(len(right), first + 1, -1):  # "= 12 + 2 = 14", "= 1/3 of $150", "= \frac{3}{2}"
                if right[q - 1].kind in ("NUM", "RP", "FACT", "SUP"):
                    try:
                        whole = _parse(right[:q], raw)[0]
                    except _Invalid:
                        continue
                    if _close(value, whole, 0, False, sympy.Integer(1), rel):
                        return _make(text, left, right[:q], None, True, value, whole, sympy.Integer(1), raw)
    except (_Refused, _Invalid, TypeError, ValueError):
        return None
    value, raw = default
    stated = sign * num.value * mults[0]
    # "410 \div 333 = 1 with a remainder of 77", "36/5 = 7 full pens": integer division, said so in words.
    floor_div = value.is_Rational and not value.is_Integer and stated == sympy.floor(value) and bool(
        _QUOTIENT_RE.search(text, right[-1].end, right[-1].end + 80))
    return _make(text, left, right[: first + 1], num, floor_div, value, stated, mults[0], raw)


def _make(text: str, left: list[_Tok], right: list[_Tok], num: _Tok | None, true: bool, value: sympy.Expr,
          stated: sympy.Expr, unit: sympy.Expr, raw: bool) -> Claim:
    expr_span = (left[0].start, max(left[-1].end, left[-1].stop))
    res_span = (num.start, num.end) if num is not None else (right[0].start, max(right[-1].end, right[-1].stop))
    simple = num is not None and num.literal and stated == num.value * unit
    return Claim(expr=text[expr_span[0] : expr_span[1]], result=text[res_span[0] : res_span[1]],
                 span=(expr_span[0], res_span[1]), true=true, expr_span=expr_span, result_span=res_span, value=value,
                 stated=stated, simple=simple, percent_as_number=raw, result_unit=unit, in_note=left[0].note >= 0)


def _stream_claims(stream: list[_Tok], text: str, deadline: float) -> list[Claim]:
    """Claims of one token stream: "a op b = c" chains, and restatements of a named quantity ("Total cost =
    20 + 23. Total cost = 45."), which models write as often as chains. Single letters are variables, re-bound
    freely ("x = -1 or x = 1"), so a name needs a word of three letters or more."""
    found: list[Claim] = []
    named: dict[tuple[str, ...], list[_Tok]] = {}
    for e, t in enumerate(stream):
        if time.monotonic() > deadline:
            break
        if t.kind != "EQ":
            continue
        left, got = _left_side(stream, e, deadline), _right_side(stream, e)
        if got is not None and left is not None:
            if (c := _judge(text, left, *got)) is not None:
                found.append(c)
            continue
        j = e
        while j > 0 and e - j < 6 and stream[j - 1].kind == "WORD":
            j -= 1
        name = tuple(w.text.lower() for w in stream[j:e])
        end = e + 1 + (len(got[0]) if got else 0)
        if got is None or not any(len(w) > 2 for w in name) or (j and stream[j - 1].kind in _ARITH) or (
                end < len(stream) and stream[end].kind == "EQ"):
            continue
        if name in named and (c := _judge(text, named[name], *got)) is not None:
            found.append(c)
        try:
            binds = _parse(got[0])[1] > 0
        except (_Invalid, _Refused):
            binds = False
        if binds:
            named[name] = got[0]
        else:
            named.pop(name, None)
    return found


def claims(step: str, timeout: float = 1.0) -> list[Claim]:
    """The arithmetic equations ``step`` states, in order (visible text first, then calculator notes).

    Checking stops after ``timeout`` seconds (a cooperative deadline, no signals): an absurd step loses its
    remaining claims rather than hanging the caller.

    >>> [(c.expr, c.result, c.true) for c in claims("20% of 50 = 10, and 10/3 = 3.33")]
    [('20% of 50', '10', True), ('10/3', '3.33', True)]
    """
    start = time.monotonic()
    deadline = start + timeout
    found: list[Claim] = []
    for stream, note, echo in _streams(step, start + timeout / 2):  # half the time at most for reading tokens
        for c in _stream_claims(stream, step, deadline):
            found.append(c if note < 0 else replace(c, in_note=True, echo_span=echo))
    return found


def numbers(text: str) -> list[Number]:
    """Every number literal of ``text`` (visible and in calculator notes), in order of position."""
    return [Number(t.text, (t.start, t.end), t.value, t.decimals, t.grouped, t.percent, t.note >= 0)
            for t in _tokenize(text) if t.kind == "NUM" and t.literal]


def operators(text: str) -> list[tuple[tuple[int, int], str]]:
    """Spans and normalised symbols ("+", "-", "*", "/") of the arithmetic operators of ``text``, by position."""
    ops = [((t.start, t.end), t.op) for stream, _, _ in _streams(text) for t in stream if t.kind == "OP"]
    return sorted(o for o in ops if o[1] in "+-*/")


def evaluate(expr: str, percent_as_number: bool = False) -> sympy.Expr | None:
    """The exact value of an arithmetic expression written as in a step; ``None`` if unreadable or too big.

    >>> evaluate("\\\\frac{1}{3} \\\\times 18"), evaluate("$3.50 x 4"), evaluate("9^9^9^9")
    (6, 14, None)
    """
    stream = _streams(expr)[0][0]
    try:
        return _parse(stream, percent_as_number)[0] if stream else None
    except (_Invalid, _Refused):
        return None


def first_false_arithmetic(steps: list[str], timeout_per_step: float = 1.0) -> int | None:
    """Index of the first step stating a false arithmetic equation (e.g. "3 * 15 = 35"); ``None`` if none does.

    >>> first_false_arithmetic(["2 + 2 = 4", "4 * 3 = 13", "13 - 1 = 11"])
    1
    """
    for i, step in enumerate(steps):
        if any(not c.true for c in claims(step, timeout=timeout_per_step)):
            return i
    return None
