"""Per-module mutation scores from a mutmut 3 run: ``python bench/mutation_scores.py SCRATCH_DIR [EQUIVALENT]``.

Reads ``mutants/**/*.py.meta`` (mutmut's exit code per mutant) and prints a Markdown table: killed, survived,
timeouts (counted as killed: the mutant hung a test), untested (no test reached the mutated function) and the
score = killed / (all checked mutants).

``EQUIVALENT`` (default ``bench/mutation_equivalent.txt`` beside this script) lists surviving mutants that change
no observable behaviour, one mutmut name a line with the reason after ``#``; the table then also gives the score
with those left out of the checked mutants. Names are mutmut's numbering for the committed source, so the list
belongs to that source: a surviving mutant not listed counts as a real survivor.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255, -9, -11}  # failed test, pytest error, timeout, crash
SURVIVED = {0}
NO_TESTS = {5, 33}


def scores(scratch: Path) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for meta in sorted((scratch / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        c: Counter[str] = Counter()
        for code in codes.values():
            if code is None:
                c["not run"] += 1
            elif code in KILLED:
                c["killed"] += 1
            elif code in SURVIVED:
                c["survived"] += 1
            elif code in NO_TESTS:
                c["no tests"] += 1
            else:
                c[f"other ({code})"] += 1
        out[str(meta.relative_to(scratch / "mutants")).removesuffix(".meta")] = c
    return out


def equivalent_names(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    names = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {n for n in names if n}


def surviving_equivalents(scratch: Path, names: set[str]) -> Counter[str]:
    """Per module, how many listed equivalent mutants survived in this run (a killed one is just killed)."""
    out: Counter[str] = Counter()
    for meta in sorted((scratch / "mutants").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = str(meta.relative_to(scratch / "mutants")).removesuffix(".meta")
        out[module] += sum(1 for key, code in codes.items() if key in names and code in SURVIVED)
    return out


def main() -> None:
    scratch = Path(sys.argv[1])
    listed = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("mutation_equivalent.txt")
    table = scores(scratch)
    equivalent = surviving_equivalents(scratch, equivalent_names(listed))
    print(
        "| module | mutants | killed | survived | of them equivalent | no test reached it | not run | score "
        "| score without equivalent |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for module, c in table.items():
        total = sum(c.values())
        checked = c["killed"] + c["survived"] + c["no tests"]
        score = f"{100 * c['killed'] / checked:.0f}%" if checked else "-"
        real = checked - equivalent[module]
        without = f"{100 * c['killed'] / real:.0f}%" if real else "-"
        row = [
            module,
            total,
            c["killed"],
            c["survived"],
            equivalent[module],
            c["no tests"],
            c["not run"],
            score,
            without,
        ]
        print("| " + " | ".join(str(x) for x in row) + " |")


if __name__ == "__main__":
    main()
