"""Problem sources: the synthetic generator, local files, and Hub datasets (fed local files, offline)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sympy

from amc.answers import last_boxed, split_gsm8k
from amc.config import FieldMap, FileSource, HubSource, SyntheticSource, config_from_dict
from amc.errors import ConfigError, InputError
from amc.sources import load_problems
from amc.sources.synthetic import generate_problem

EQUATION = re.compile(r"(\d+(?:\s*[-+*/]\s*\d+)+)\s*=\s*(\d+)")

# Numeric answers on purpose: many files store them as numbers, and a Problem's answer is text.
ROWS = [
    {"question": "What is 2 + 3?", "answer": 5},
    {"question": "What is 4 * 5?", "answer": 20},
    {"question": "What is 9 - 1?", "answer": 8},
]


def write_jsonl(path: Path, rows: list, blank_after: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if blank_after is not None:
        lines.insert(blank_after, "")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_json(path: Path, rows: list) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def assert_names(err: InputError, file: Path | str, row: int | None, field: str | None) -> None:
    """The error points at the file, row and field, both as attributes and in the message a user reads."""
    text = str(err)
    assert err.file == str(file) and str(file) in text
    assert err.row == row
    if row is not None:
        assert f"row {row}" in text
    assert err.field == field
    if field is not None:
        assert f"field '{field}'" in text


# ----------------------------------------------------------------------------------------------- synthetic
def test_synthetic_same_seed_gives_byte_identical_problems():
    cfg = SyntheticSource(count=40, min_steps=1, max_steps=6)
    first = [p.model_dump_json() for p in load_problems(cfg, seed=7)]
    again = [p.model_dump_json() for p in load_problems(cfg, seed=7)]
    other = [p.model_dump_json() for p in load_problems(cfg, seed=8)]
    assert first == again
    assert first != other
    assert len(set(first)) == 40


def test_synthetic_more_problems_keep_the_first_ones_and_config_seed_wins():
    short = load_problems(SyntheticSource(count=5), seed=3)
    longer = load_problems(SyntheticSource(count=12), seed=3)
    assert longer[:5] == short
    assert load_problems(SyntheticSource(count=5, seed=3), seed=999) == short


def test_synthetic_ids_source_and_difficulty_range():
    problems = load_problems(SyntheticSource(count=200, min_steps=2, max_steps=4), seed=0)
    assert [p.id for p in problems[:2]] == ["synthetic-00000", "synthetic-00001"]
    assert {p.source for p in problems} == {"synthetic"}
    assert set(Counter(p.difficulty for p in problems)) == {2, 3, 4}
    assert len({p.subject for p in problems}) >= 3  # several story themes, not one template


def test_synthetic_solution_equations_are_true_and_chain_to_the_answer():
    problems = load_problems(SyntheticSource(count=300, min_steps=1, max_steps=9), seed=11)
    for p in problems:
        lines = p.solution.splitlines()
        steps, last = lines[:-1], lines[-1]
        assert len(steps) == p.difficulty, p.solution
        assert last == f"The answer is {p.answer}.", p.solution
        previous = None
        for line in steps:
            found = EQUATION.findall(line)
            assert len(found) == 1, line  # exactly one equation per step
            lhs, rhs = found[0]
            value = sympy.sympify(lhs)
            assert value == sympy.Integer(rhs) and value.is_integer and value > 0, line
            if previous is not None:
                # Later steps start from the previous result, by value.
                assert lhs.split()[0] == previous, (line, previous)
            previous = rhs
        assert previous == p.answer
        assert p.question.endswith("?")


def test_synthetic_every_step_count_is_reachable_without_repeated_sentences():
    for steps in range(1, 9):
        for index in range(20):
            p = generate_problem(index, seed=5, steps=steps)
            step_lines = p.solution.splitlines()[:-1]
            assert len(step_lines) == steps
            assert len(set(step_lines)) == steps


def test_synthetic_rejects_min_steps_above_max_steps():
    # the range is checked when the pipeline file is read, before any problem is generated
    with pytest.raises(ConfigError, match="min_steps"):
        config_from_dict({"name": "t", "source": {"min_steps": 5, "max_steps": 2}})


# ----------------------------------------------------------------------------------------------- answers
def test_split_gsm8k_takes_text_after_hashes_without_commas():
    assert split_gsm8k("It is 2+3=<<2+3=5>>5.\n#### 1,005") == ("It is 2+3=<<2+3=5>>5.", "1005")
    assert split_gsm8k("no marker here") == ("no marker here", None)
    assert split_gsm8k("text\n####   ")[1] is None


def test_last_boxed_handles_nesting_several_boxes_and_bad_input():
    assert last_boxed(r"$\boxed{1}$ then $\boxed{\frac{1}{\sqrt{2}}}$.") == r"\frac{1}{\sqrt{2}}"
    assert last_boxed(r"so \boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed(r"so $\boxed 5$.") == "5"
    assert last_boxed(r"so \boxed{\frac{1}{2}") is None  # truncated: no guess
    assert last_boxed("no box") is None
    assert last_boxed(r"\boxed{}") is None


# ----------------------------------------------------------------------------------------------- local files
@pytest.mark.parametrize("suffix,writer", [(".jsonl", write_jsonl), (".json", write_json), (".parquet", write_parquet)])
def test_each_file_format_reads_the_same_problems(tmp_path, suffix, writer):
    path = writer(tmp_path / f"tiny{suffix}", ROWS)
    problems = load_problems(FileSource(path=str(path)), seed=0)
    assert [(p.id, p.question, p.answer) for p in problems] == [
        ("tiny-00000", "What is 2 + 3?", "5"),
        ("tiny-00001", "What is 4 * 5?", "20"),
        ("tiny-00002", "What is 9 - 1?", "8"),
    ]
    assert {p.source for p in problems} == {str(path)}


def test_format_given_overrides_the_suffix_and_unknown_suffix_fails(tmp_path):
    path = write_jsonl(tmp_path / "rows.txt", ROWS)
    assert len(load_problems(FileSource(path=str(path), format="jsonl"), seed=0)) == 3
    with pytest.raises(InputError, match="suffix") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, None, None)


def test_gsm8k_format_on_real_file_keeps_calculator_notes(shared_data):
    path = shared_data / "gsm8k" / "test.jsonl"
    problems = load_problems(FileSource(path=str(path), answer_format="gsm8k", limit=5), seed=0)
    assert len(problems) == 5
    first = problems[0]
    assert first.id == "test-00000" and first.answer == "18"
    assert "<<16-3-4=9>>" in first.solution and "####" not in first.solution
    assert first.solution.splitlines()[-1].startswith("She makes 9 * 2")


def test_gsm8k_format_removes_thousands_separators(tmp_path):
    row = {"question": "q?", "answer": "He earns 1000+500=<<1000+500=1500>>1,500.\n#### 1,500"}
    path = write_jsonl(tmp_path / "g.jsonl", [row])
    (problem,) = load_problems(FileSource(path=str(path), answer_format="gsm8k"), seed=0)
    assert problem.answer == "1500"
    assert problem.solution == "He earns 1000+500=<<1000+500=1500>>1,500."


def test_boxed_format_reads_the_last_box_of_the_solution(tmp_path):
    rows = [{"problem": "Find x.", "solution": r"First $\boxed{2}$, finally $x = \boxed{\frac{3}{4}}$."}]
    path = write_json(tmp_path / "m.json", rows)
    fields = FieldMap(question="problem", answer=None, solution="solution")
    (problem,) = load_problems(FileSource(path=str(path), fields=fields, answer_format="boxed"), seed=0)
    assert problem.answer == r"\frac{3}{4}"
    assert problem.solution == rows[0]["solution"]


def test_boxed_format_prefers_a_mapped_answer_field(tmp_path):
    rows = [{"question": "q?", "answer": r"It is \boxed{7}.", "solution": r"Steps \boxed{6}"}]
    path = write_jsonl(tmp_path / "b.jsonl", rows)
    fields = FieldMap(answer="answer", solution="solution")
    (problem,) = load_problems(FileSource(path=str(path), fields=fields, answer_format="boxed"), seed=0)
    assert problem.answer == "7"


def test_field_mapping_reads_ids_levels_and_subjects(tmp_path):
    rows = [
        {"uid": "a1", "prompt": "How many?", "final": "3", "work": "1 + 2 = 3", "lvl": "Level 3", "topic": "Algebra"},
        {"uid": "a2", "prompt": "How much?", "final": "4.5", "work": None, "lvl": 2, "topic": None},
        {"uid": "a3", "prompt": "Which?", "final": "x", "work": "w", "lvl": "Level ?", "topic": "Geometry"},
    ]
    path = write_json(tmp_path / "mapped.json", rows)
    fields = FieldMap(id="uid", question="prompt", answer="final", solution="work", difficulty="lvl", subject="topic")
    problems = load_problems(FileSource(path=str(path), fields=fields), seed=0)
    assert [(p.id, p.question, p.answer, p.solution, p.difficulty, p.subject) for p in problems] == [
        ("a1", "How many?", "3", "1 + 2 = 3", 3, "Algebra"),
        ("a2", "How much?", "4.5", None, 2, None),
        ("a3", "Which?", "x", "w", None, "Geometry"),  # MATH's 'Level ?' means "not known"
    ]


def test_limit_takes_the_first_rows_and_never_reads_past_them(tmp_path):
    path = write_jsonl(tmp_path / "l.jsonl", ROWS)
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    problems = load_problems(FileSource(path=str(path), limit=2), seed=0)
    assert [p.answer for p in problems] == ["5", "20"]
    with pytest.raises(InputError):
        load_problems(FileSource(path=str(path)), seed=0)


# ----------------------------------------------------------------------------------------------- bad input
def test_jsonl_missing_question_names_line_number_and_field(tmp_path):
    rows = [ROWS[0], {"answer": "1"}]
    path = write_jsonl(tmp_path / "bad.jsonl", rows, blank_after=1)  # the bad row is on line 3, index 1
    with pytest.raises(InputError) as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, 3, "question")
    assert "1-based line number" in str(info.value)


@pytest.mark.parametrize("suffix,writer", [(".json", write_json), (".parquet", write_parquet)])
def test_indexed_formats_name_the_0_based_row(tmp_path, suffix, writer):
    rows = [ROWS[0], {"question": None, "answer": 1}]  # a null, as parquet stores a missing value
    path = writer(tmp_path / f"bad{suffix}", rows)
    with pytest.raises(InputError, match="question is empty") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, 1, "question")
    assert "0-based index" in str(info.value)


def test_empty_reference_answer_is_an_error(tmp_path):
    path = write_json(tmp_path / "e.json", [ROWS[0], ROWS[1], {"question": "q?", "answer": "   "}])
    with pytest.raises(InputError, match="reference answer is empty") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, 2, "answer")


def test_gsm8k_answer_without_hashes_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q?", "answer": "the answer is 4"}])
    with pytest.raises(InputError, match="####") as info:
        load_problems(FileSource(path=str(path), answer_format="gsm8k"), seed=0)
    assert_names(info.value, path, 1, "answer")


def test_solution_without_a_box_is_an_error(tmp_path):
    path = write_json(tmp_path / "m.json", [{"problem": "p", "solution": "no box here"}])
    fields = FieldMap(question="problem", answer=None, solution="solution")
    with pytest.raises(InputError, match="boxed") as info:
        load_problems(FileSource(path=str(path), fields=fields, answer_format="boxed"), seed=0)
    assert_names(info.value, path, 0, "solution")


def test_line_that_is_not_json_names_its_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"question": "q", "answer": ' + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, 2, None)


def test_json_file_that_is_not_an_array_is_an_error(tmp_path):
    path = tmp_path / "obj.json"
    path.write_text(json.dumps({"question": "q", "answer": "1"}), encoding="utf-8")
    with pytest.raises(InputError, match="array") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, None, None)


def test_row_that_is_not_an_object_is_named(tmp_path):
    path = write_json(tmp_path / "mixed.json", [ROWS[0], ["What is 1 + 1?", "2"]])
    with pytest.raises(InputError, match="expected an object, got list") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, 1, None)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(InputError, match="not found") as info:
        load_problems(FileSource(path=str(path)), seed=0)
    assert_names(info.value, path, None, None)


def test_duplicate_ids_name_the_second_row(tmp_path):
    rows = [{"id": "p1", **ROWS[0]}, {"id": "p2", **ROWS[1]}, {"id": "p1", **ROWS[2]}]
    path = write_json(tmp_path / "dup.json", rows)
    with pytest.raises(InputError, match="duplicate id 'p1' \\(first seen at row 0\\)") as info:
        load_problems(FileSource(path=str(path), fields=FieldMap(id="id")), seed=0)
    assert_names(info.value, path, 2, "id")


# ----------------------------------------------------------------------------------------------- hub
def test_gsm8k_preset_on_shared_file(shared_data):
    path = shared_data / "gsm8k" / "test.jsonl"
    problems = load_problems(HubSource(preset="gsm8k", dataset=str(path)), seed=0)
    assert len(problems) == 1319
    assert problems[0].answer == "18" and problems[0].id == "gsm8k-test-00000"
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", p.answer) for p in problems)
    assert all("####" not in p.solution for p in problems)
    assert {p.source for p in problems} == {str(path)}
    # The same row-to-problem code as local files: only ids and nothing else differ.
    local = load_problems(FileSource(path=str(path), answer_format="gsm8k"), seed=0)
    assert [(p.question, p.answer, p.solution) for p in local] == [(p.question, p.answer, p.solution) for p in problems]


def test_gsm8k_preset_on_a_folder_picks_the_split(shared_data):
    folder = shared_data / "gsm8k"
    problems = load_problems(HubSource(preset="gsm8k", dataset=str(folder), split="test", limit=4), seed=0)
    assert [p.id for p in problems] == [f"gsm8k-test-{i:05d}" for i in range(4)]
    assert problems[0].answer == "18"


def test_math_preset_uses_the_answer_column_of_math500(shared_data):
    path = shared_data / "math500" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    problems = load_problems(HubSource(preset="math", dataset=str(path)), seed=0)
    assert len(problems) == 500
    assert [p.answer for p in problems] == [r["answer"] for r in rows]
    assert Counter(p.difficulty for p in problems) == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    assert problems[0].subject == "Precalculus" and problems[0].id == "math-test-00000"
    assert all(p.solution for p in problems)
    # Where both exist, the curated answer is what the last \boxed{} of the solution holds.
    assert all(last_boxed(p.solution) == p.answer for p in problems)


def test_math_preset_without_answer_column_reads_the_box(tmp_path):
    rows = [
        {"problem": "p1", "solution": r"So $\boxed{12}$.", "type": "Algebra", "level": "Level 3"},
        {"problem": "p2", "solution": r"So $\boxed{\frac{1}{2}}$.", "type": "Geometry", "level": "Level ?"},
    ]
    path = write_jsonl(tmp_path / "competition.jsonl", rows)
    problems = load_problems(HubSource(preset="math", dataset=str(path), split="train"), seed=0)
    assert [(p.id, p.answer, p.subject, p.difficulty) for p in problems] == [
        ("math-train-00000", "12", "Algebra", 3),
        ("math-train-00001", r"\frac{1}{2}", "Geometry", None),
    ]


def test_custom_hub_source_uses_given_fields_and_reports_bad_rows(tmp_path):
    rows = [{"q": "What is 1 + 1?", "a": "2"}, {"q": "What is 2 + 2?", "a": ""}]
    path = write_parquet(tmp_path / "custom.parquet", rows)
    fields = FieldMap(question="q", answer="a")
    (problem,) = load_problems(HubSource(dataset=str(path), fields=fields, limit=1), seed=0)
    assert (problem.id, problem.question, problem.answer) == ("custom-test-00000", "What is 1 + 1?", "2")
    with pytest.raises(InputError) as info:
        load_problems(HubSource(dataset=str(path), fields=fields), seed=0)
    assert_names(info.value, path, 1, "a")


def test_custom_hub_source_needs_a_dataset():
    with pytest.raises(ConfigError, match="source.dataset"):
        load_problems(HubSource(preset="custom"), seed=0)


def test_unloadable_hub_dataset_is_named_offline():
    with pytest.raises(InputError, match="cannot load split 'test'") as info:
        load_problems(HubSource(dataset="amc-tests/no-such-dataset"), seed=0)
    assert info.value.file == "amc-tests/no-such-dataset"


def test_a_list_of_sources_is_concatenated(shared_data, tmp_path):
    from amc.config import config_from_dict
    from amc.errors import InputError
    from amc.stages.problems import ProblemsStage

    gsm = {"kind": "hub", "preset": "gsm8k", "dataset": str(shared_data / "gsm8k" / "test.jsonl"), "limit": 5}
    math = {"kind": "hub", "preset": "math", "dataset": str(shared_data / "math500" / "test.jsonl"), "limit": 3}
    cfg = config_from_dict({"name": "x", "source": [gsm, math, {"count": 2}]})
    problems = ProblemsStage().load(cfg)
    assert len(problems) == 10 and len({p.id for p in problems}) == 10
    assert [p.id.split("-")[0] for p in problems] == ["gsm8k"] * 5 + ["math"] * 3 + ["synthetic"] * 2

    twice = config_from_dict({"name": "x", "source": [gsm, gsm]})
    with pytest.raises(InputError, match="also used by source"):
        ProblemsStage().load(twice)
