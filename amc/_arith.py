"""Reading arithmetic in a step: the tokenizer and the exact expression parser behind :mod:`amc.steps`.

``_tokenize`` turns a step into tokens with spans into it (numbers with their value as written, operators,
LaTeX fractions and roots, words, GSM8K calculator notes); ``_words_to_ops`` reads operator words and drops unit
words; ``_streams`` gives the visible text and each calculator note as separate token streams; ``_Parser``
(through ``_parse``) evaluates a token run exactly with sympy, refusing (``_Refused``) what is too costly to
evaluate and rejecting (``_Invalid``) what is not one well-formed expression. Where the claims are and whether
they hold is :mod:`amc.steps`'s business.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

import sympy

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
    "the",
    "a",
    "an",
    "of",
    "and",
    "or",
    "to",
    "is",
    "are",
    "was",
    "were",
    "be",
    "per",
    "each",
    "more",
    "less",
    "than",
    "that",
    "this",
    "these",
    "it",
    "its",
    "in",
    "on",
    "for",
    "by",
    "from",
    "with",
    "as",
    "at",
    "total",
    "number",
    "times",
    "so",
    "then",
    "which",
    "who",
    "what",
    "if",
    "not",
    "all",
    "already",
    "up",
    "because",
    "since",
    "thus",
    "hence",
    "therefore",
    "but",
    "when",
    "after",
    "before",
    "while",
    "where",
}
_GLUED_UNITS = {
    "cm",
    "mm",
    "km",
    "kg",
    "mg",
    "lb",
    "lbs",
    "oz",
    "ft",
    "mi",
    "ml",
    "hr",
    "hrs",
    "min",
    "sec",
    "pm",
    "am",
    "mph",
    "kph",
    "kb",
    "mb",
    "gb",
}


def _digits(lit: str) -> str:
    return re.sub(r"\{,\}|[,  ]", "", lit)  # thousands separators: "1,000", "1{,}000", "1 000"


@functools.lru_cache(maxsize=65536)
def _rational(digits: str) -> sympy.Rational:
    """``sympy.Rational`` of a literal's digits (immutable, so one object serves every occurrence)."""
    return sympy.Rational(digits)


def _tokenize(text: str, deadline: float = float("inf"), max_tokens: int | None = None) -> list[_Tok]:
    """Tokens of a step with spans into it; LaTeX spacing, ``$`` and ``\\left`` vanish. Stops after ``max_tokens``
    tokens (a deterministic budget) or at ``deadline``."""
    toks: list[_Tok] = []
    note, n_notes, prev_end = -1, 0, -1
    for m in _TOKEN_RE.finditer(text):
        if max_tokens is not None and len(toks) >= max_tokens:
            break
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
            digits = _digits(lit)
            tok = _Tok(  # built directly: dataclasses.replace was a tenth of tokenizing
                "NUM",
                lit,
                s,
                m.end("num"),
                stop=e,
                percent=m.group("pct") is not None,
                value=_rational(digits),
                grouped=len(lit) > len(digits),
                decimals=len(lit.split(".")[1]) if "." in lit else 0,
                approx=m.group("dots") is not None,
                spaced=tok.spaced,
                note=tok.note,
            )
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
        elif (
            t.text == "of"
            and operand_after
            and (
                kind(i - 1) == "RP"
                or kind(i - 1) == "NUM"
                and (toks[i - 1].percent or kind(i - 2) == "OP" and toks[i - 2].op == "/")
            )
        ):
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
            if (
                whole
                and n1
                and n2
                and n3
                and n1.kind == n3.kind == "NUM"
                and n2.op == "/"
                and not n2.spaced
                and not n3.spaced
                and n1.value.is_Integer
                and n3.value.is_Integer
                and 0 < n1.value < n3.value
            ):
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


def _parse(toks: list[_Tok], raw: bool = False) -> tuple[sympy.Expr, int]:
    p = _Parser(toks, raw)
    return p.parse(), p.ops


def _streams(
    text: str, deadline: float = float("inf"), max_tokens: int | None = None
) -> list[tuple[list[_Tok], int, tuple[int, int] | None]]:
    """(tokens, note index or -1, echo span) for the visible text, where notes are transparent, and each note."""
    toks = _tokenize(text, deadline, max_tokens)
    out: list[tuple[list[_Tok], int, tuple[int, int] | None]] = [
        (_words_to_ops([t for t in toks if t.note < 0]), -1, None)
    ]
    for i, t in enumerate(toks):
        if t.kind == "NCLOSE":
            nxt = toks[i + 1] if i + 1 < len(toks) else None
            echo = (nxt.start, nxt.end) if nxt is not None and nxt.kind == "NUM" and nxt.note < 0 else None
            inner = [u for u in toks if u.note == t.note and u.kind not in ("NOPEN", "NCLOSE")]
            out.append((_words_to_ops(inner), t.note, echo))
    return out
