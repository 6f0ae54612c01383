"""Per-module mutation scores from a mutmut 3 run: ``python bench/mutation_scores.py SCRATCH_DIR``.

Reads ``mutants/**/*.py.meta`` (mutmut's exit code per mutant) and prints a Markdown table: killed, survived,
timeouts (counted as killed: the mutant hung a test), untested (no test reached the mutated function) and the
score = killed / (all checked mutants).
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


def main() -> None:
    table = scores(Path(sys.argv[1]))
    print("| module | mutants | killed | survived | no test reached it | not run | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for module, c in table.items():
        total = sum(c.values())
        checked = c["killed"] + c["survived"] + c["no tests"]
        score = f"{100 * c['killed'] / checked:.0f}%" if checked else "-"
        row = [module, total, c["killed"], c["survived"], c["no tests"], c["not run"], score]
        print("| " + " | ".join(str(x) for x in row) + " |")


if __name__ == "__main__":
    main()
