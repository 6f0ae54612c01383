"""amc eval (ProcessBench-style F1, critic metrics on a run, loop metrics) and amc report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from amc.cli import app
from amc.config import config_from_dict
from amc.critique_format import parse_text
from amc.errors import AmcError, InputError
from amc.evaluate.critic import ChecksCritic, critic_from_spec
from amc.evaluate.critic_eval import critic_metrics
from amc.evaluate.items import EvalItem, load_items
from amc.evaluate.loop_metrics import confidence_vs_critique, loop_metrics
from amc.evaluate.processbench import first_error_metrics, metrics_from_predictions
from amc.records import Critique, ReasoningPath, StepVerdict

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def said(result) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


# ------------------------------------------------------------------------------------- ProcessBench on real data


@pytest.fixture(scope="module")
def gsm8k_eval(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("pb") / "gsm8k-checks"
    data = shared_data / "processbench" / "gsm8k.json"
    result = invoke("eval", "processbench", "--critic", "checks", "--data", str(data), "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), out


def test_processbench_checks_prints_the_three_numbers(gsm8k_eval):
    metrics, _ = gsm8k_eval
    for key in ("acc_error", "acc_correct", "f1"):
        assert isinstance(metrics[key], float) and 0 <= metrics[key] <= 100
    assert metrics["n"] == metrics["scored"] == 400 and metrics["critic"] == "checks"
    assert set(metrics["subsets"]) == {"gsm8k"}
    # the checks never call a correct solution wrong on ProcessBench GSM8K, and find some first errors
    assert metrics["acc_correct"] == 100.0 and 0 < metrics["acc_error"] < 50


def test_the_numbers_are_recomputed_from_the_saved_predictions(gsm8k_eval, shared_data: Path):
    metrics, out = gsm8k_eval
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    source = json.loads((shared_data / "processbench" / "gsm8k.json").read_text())
    assert [r["id"] for r in rows] == [s["id"] for s in source]
    assert [r["label"] for r in rows] == [s["label"] for s in source]
    erroneous = [r for r in rows if r["label"] >= 0]
    correct = [r for r in rows if r["label"] == -1]
    a = 100 * sum(r["prediction"] == r["label"] for r in erroneous) / len(erroneous)
    b = 100 * sum(r["prediction"] == -1 for r in correct) / len(correct)
    assert metrics["acc_error"] == pytest.approx(a)
    assert metrics["acc_correct"] == pytest.approx(b)
    assert metrics["f1"] == pytest.approx(2 * a * b / (a + b))
    assert json.loads((out / "metrics.json").read_text())["f1"] == metrics["f1"]
    for r in rows:  # the saved critique text says what the prediction says
        assert parse_text(r["critique"], None).first_error_step == r["prediction"]


def test_report_renders_a_processbench_evaluation(gsm8k_eval, tmp_path: Path):
    _, out = gsm8k_eval
    result = invoke("report", str(out), "--out", str(tmp_path / "rep"))
    assert result.exit_code == 0, result.output
    page = (tmp_path / "rep" / "report.md").read_text()
    assert "| gsm8k | 10.1 | 100.0 |" in page
    for img in ("processbench.png", "first_error_position.png"):
        assert (tmp_path / "rep" / "plots" / img).read_bytes()[:4] == b"\x89PNG"
        assert f"plots/{img}" in page


def test_first_error_metrics_by_hand():
    m = first_error_metrics([(2, 2), (2, 1), (0, None), (-1, -1), (-1, 0), (-1, -1), (None, 3)])
    assert (m["n_error"], m["n_correct"], m["unparsed"]) == (3, 3, 1)
    assert m["acc_error"] == pytest.approx(100 / 3) and m["acc_correct"] == pytest.approx(200 / 3)
    assert m["f1"] == pytest.approx(2 * (100 / 3) * (200 / 3) / 100)
    assert first_error_metrics([(1, 0), (-1, 0)])["f1"] == 0.0


def test_headline_numbers_are_the_mean_over_subsets():
    rows = [{"subset": "a", "label": 0, "prediction": 0}, {"subset": "a", "label": -1, "prediction": -1}]
    rows += [{"subset": "b", "label": 1, "prediction": 0}, {"subset": "b", "label": -1, "prediction": -1}]
    rows += [{"subset": "b", "label": 2, "prediction": 2}, {"subset": "b", "label": -1, "prediction": -1}]
    m = metrics_from_predictions(rows)
    assert m["subsets"]["a"]["f1"] == 100.0 and m["subsets"]["b"]["f1"] == pytest.approx(200 / 3)
    assert m["f1"] == pytest.approx((100 + 200 / 3) / 2)  # not the F1 of the pooled items (which is 80)
    assert m["acc_error"] == pytest.approx(75.0)


def test_checks_critic_grades_the_final_answer_when_there_is_a_reference():
    items = [
        EvalItem("a", "s", "?", ["3 * 4 = 12", "12 + 1 = 14", "The answer is 14."], 1, reference_answer="13"),
        EvalItem("b", "s", "?", ["3 * 4 = 12", "So she has 13 apples.", "The answer is 13."], 1, reference_answer="12"),
        EvalItem("c", "s", "?", ["3 * 4 = 12", "The answer is 12."], -1, reference_answer="12"),
        EvalItem("d", "s", "?", ["3 * 4 = 12", "The answer is 13."], None),  # no reference: steps only
    ]
    a, b, c, d = ChecksCritic().critique(items)
    assert (a.prediction, a.final_verdict) == (1, False)
    assert (b.prediction, b.final_verdict) == (2, False)  # no false equation, wrong answer: the last step
    assert (c.prediction, c.final_verdict) == (-1, True)
    assert (d.prediction, d.final_verdict) == (-1, True)
    assert "12 + 1 = 14 is false" in a.critique


def test_checks_critic_in_worker_processes_gives_the_same_predictions(shared_data: Path):
    items = load_items(shared_data / "processbench" / "gsm8k.json", limit=48)
    one = [p.prediction for p in ChecksCritic(workers=1).critique(items)]
    assert [p.prediction for p in ChecksCritic(workers=2).critique(items)] == one


def test_a_step_past_the_last_resort_guard_is_undecided_not_a_guess(monkeypatch: pytest.MonkeyPatch):
    import amc.evaluate.critic as critic_module

    def stuck(step: str) -> list:
        raise critic_module.CheckTimeout("outlived its guard")

    monkeypatch.setattr(critic_module, "claims", stuck)
    [p] = ChecksCritic().critique([EvalItem("x", "s", "?", ["2 + 2 = 5"], 0)])
    assert p.prediction is None and p.parse_status == "failed" and p.problems[0].startswith("undecided")
    assert metrics_from_predictions([p])["unparsed"] == 1


def test_a_pathological_step_is_bounded():
    huge = "So 9^9^9^9 = 12 and 100000! = 3 and " + " + ".join(["1"] * 5000) + " = 7."
    [p] = ChecksCritic().critique([EvalItem("x", "s", "?", ["2 + 2 = 4", huge, "The answer is 7."], 1)])
    assert p.prediction in (-1, 1)


# ------------------------------------------------------------------------------------------------ loaders


def test_loaders_read_prmbench_and_name_bad_rows(tmp_path: Path):
    rows = [
        {"idx": "p1", "modified_question": "Q", "modified_process": ["a", "b", "c"], "error_steps": [3, 2],
         "classification": "circular"},
        {"idx": "p2", "question": "Q", "modified_process": ["a"], "error_steps": [], "classification": "circular"},
    ]  # fmt: skip
    f = tmp_path / "prm.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    items = load_items(f)
    assert [(i.id, i.subset, i.label) for i in items] == [("p1", "circular", 1), ("p2", "circular", -1)]
    bad = tmp_path / "pb.json"
    bad.write_text(json.dumps([{"problem": "Q", "steps": ["a", "b"], "label": 0}, {"problem": "Q", "steps": ["a"]}]))
    with pytest.raises(InputError, match=r"pb.json, row 1, field 'label': missing"):
        load_items(bad)
    bad.write_text(json.dumps([{"problem": "Q", "steps": ["a", "b"], "label": 5}]))
    with pytest.raises(InputError, match=r"row 0, field 'label'"):
        load_items(bad)
    result = invoke("eval", "processbench", "--critic", "checks", "--data", str(bad), "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "field 'label'" in said(result)


def test_a_folder_is_one_subset_per_file_and_limit_and_subset_apply(shared_data: Path):
    items = load_items(shared_data / "processbench", limit=5)
    assert [i.subset for i in items] == ["gsm8k"] * 5 + ["math"] * 5
    assert {i.subset for i in load_items(shared_data / "processbench", subset="math", limit=3)} == {"math"}
    with pytest.raises(AmcError, match="no such file"):
        load_items("does/not/exist.json")


def test_a_bad_critic_spec_is_one_clear_error():
    with pytest.raises(AmcError, match="expected 'checks', ENGINE:MODEL"):
        critic_from_spec("nonsense")


def test_specs_take_engine_settings_and_roles_from_the_pipeline_file():
    cfg = config_from_dict({"name": "x", "models": {"annotator": {"engine": "sim", "model": "ann", "error_rate": 0.0}}})
    by_engine = critic_from_spec("sim:other", cfg)
    assert by_engine.name == "sim:other" and by_engine.model.error_rate == 0.0  # the file's sim settings
    assert critic_from_spec("critic", cfg).name == "sim:ann"  # an unset critic role is the annotator
    assert critic_from_spec("annotator", cfg).name == "sim:ann"
    with pytest.raises(AmcError, match="models: role of x"):
        critic_from_spec("judge", cfg)


# ----------------------------------------------------------------------------------- amc runs (hand-made)


def _path(pid: str, strategy: str, correct: bool, error_step: int | None, difficulty: int, etype: str | None = None):
    steps = ["2 + 3 = 5", "5 * 2 = 10", "The answer is 10."]
    return ReasoningPath(
        id=f"{pid}/{strategy}/0", problem_id=pid, question="What is (2 + 3) * 2?", reference_answer="10",
        steps=steps if correct else ["2 + 3 = 5", "5 * 2 = 11", "The answer is 11."], predicted_answer="10",
        correct=correct, strategy=strategy, generator="g", error_step=error_step, error_type=etype,
        source="synthetic", difficulty=difficulty,
    )  # fmt: skip


def _write(folder: Path, rows: list[dict]) -> None:
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "00000-of-00001.parquet")


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    paths = [
        _path("p1", "sample", True, None, 2),
        _path("p1", "inject", False, 1, 2, "calculation_error"),
        _path("p2", "symbolic", False, 1, 3, "wrong_result"),
        _path("p2", "sample", False, None, 3),
    ]
    _write(run / "inject" / "data", [p.model_dump() for p in paths])
    # the annotator: right on p1's paths, says p2's symbolic path is fine (a miss), blames step 0 on p2's sample
    said = [(-1, True), (1, False), (-1, True), (0, False)]
    critiques = []
    for p, (first, verdict) in zip(paths, said, strict=True):
        verdicts = [StepVerdict(index=i, step=s, correct=first < 0 or i < first) for i, s in enumerate(p.steps)]
        critiques.append(Critique(id=f"{p.id}/c0", path=p, annotator="a", step_verdicts=verdicts,
                                  first_error_step=first, final_verdict=verdict, raw="...", parse_status="ok",
                                  hints=["reference_answer"]).model_dump())  # fmt: skip
    _write(run / "critique" / "data", critiques)
    return run


def test_eval_critic_scores_the_runs_critiques_by_group(run_dir: Path, tmp_path: Path):
    out = tmp_path / "ev"
    result = invoke("eval", "critic", "--run", str(run_dir), "--json", "--out", str(out))
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["n"] == 4 and m["verdict_accuracy"] == 75.0  # the symbolic path was called correct
    assert m["n_known_error"] == 2 and m["first_error_accuracy"] == 50.0
    assert m["acc_correct"] == 100.0 and m["acc_error"] == 50.0  # p1's correct sample is error-free by convention
    by = m["by"]
    assert by["strategy"]["inject"]["first_error_accuracy"] == 100.0
    assert by["strategy"]["symbolic"]["first_error_accuracy"] == 0.0
    assert by["strategy"]["sample"]["verdict_accuracy"] == 100.0
    assert by["difficulty"]["3"]["verdict_accuracy"] == 50.0
    assert set(by["error_type"]) == {"calculation_error", "wrong_result", "none"}
    assert m["hints"] == {"reference_answer": 4}
    rendered = invoke("report", str(out))
    assert rendered.exit_code == 0, rendered.output
    page = (out / "report.md").read_text()
    assert "## By strategy" in page and (out / "plots" / "by_strategy.png").is_file()


def test_eval_critic_with_a_critic_critiques_the_runs_paths(run_dir: Path, tmp_path: Path):
    result = invoke("eval", "critic", "--run", str(run_dir), "--critic", "checks", "--json", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    m = json.loads(result.stdout)
    assert m["verdict_accuracy"] == 100.0 and m["first_error_accuracy"] == 100.0


def test_a_model_critic_goes_through_template_parser_and_cache(run_dir: Path, tmp_path: Path):
    # sim is amc's offline stand-in engine: enough to drive the model path (template, backend, parser, cache)
    args = ["eval", "processbench", "--critic", "sim:sim-critic", "--data", str(run_dir), "--json"]
    first = invoke(*args, "--out", str(tmp_path / "a"))
    assert first.exit_code == 0, first.output
    rows = [json.loads(x) for x in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["parse_status"] == "ok" and "Correctness of the final answer" in r["critique"] for r in rows)
    assert [r["prediction"] for r in rows] == [-1, 1, 1, 1]
    critic = critic_from_spec("sim:sim-critic", cache_path=tmp_path / "a" / "cache.sqlite")
    critic.critique(load_items(run_dir))
    assert critic.backend.cached == 4 and critic.backend.made == 0  # a rerun asks the engine nothing
    critic.close()


# ------------------------------------------------------------------------------------------------ loops


def _transitions(folder: Path, pairs: dict[str, list[tuple[bool, bool]]], rnd: int = 1, diff: int | None = 2):
    rows = [
        {"problem_id": pid, "sample_index": i, "round": rnd, "correct_before": b, "correct_after": a,
         "difficulty": diff}
        for pid, samples in pairs.items() for i, (b, a) in enumerate(samples)
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "transitions.parquet")
    return rows


HAND = {
    # P_a = 3/4, P_b = 2/3 (two of the three right stay right), P_c = 1
    "p1": [(True, True), (True, False), (True, True), (False, True)],
    # P_a = 0, P_b unused (weight 0), P_c = 1/2
    "p2": [(False, True), (False, False)],
}


def test_confidence_vs_critique_by_hand(tmp_path: Path):
    s = confidence_vs_critique(_transitions(tmp_path, HAND))
    assert s["acc1"] == pytest.approx(0.375)
    assert s["cl"] == pytest.approx((0.75 * 2 / 3) / 0.75)
    assert s["cs"] == pytest.approx((0.25 * 1 + 1.0 * 0.5) / 1.25)  # 0.6
    assert s["acc2"] == pytest.approx(0.375 * 2 / 3 + 0.625 * 0.6)  # 0.625
    assert s["rss"] == pytest.approx((0.625 - 0.375**2) / (2 * 0.375 * 0.625))
    all_right = confidence_vs_critique([{"problem_id": "p", "correct_before": True, "correct_after": True}])
    assert all_right["cs"] is None and all_right["rss"] is None and all_right["acc2"] == 1.0


def test_loop_metrics_transitions_and_rounds(tmp_path: Path):
    rows = _transitions(tmp_path, HAND)
    second = [{**r, "round": 2, "correct_before": r["correct_after"], "correct_after": True} for r in rows]
    m = loop_metrics(rows + second)
    t1, t2 = m["transitions"]
    assert (t1["c_c"], t1["c_i"], t1["i_c"], t1["i_i"]) == (2, 1, 2, 1)
    assert (t1["acc_before"], t1["acc_after"]) == (0.5, pytest.approx(4 / 6))
    assert (t2["c_c"], t2["i_c"]) == (4, 2) and t2["acc_after"] == 1.0
    assert m["cvc"]["overall"]["acc2"] == 1.0 and m["cvc"]["rounds"]["1"]["acc2"] == pytest.approx(0.625)


def test_eval_loop_and_report_on_loop_and_selftrain_outputs(tmp_path: Path):
    loop = tmp_path / "loop"
    _transitions(loop, HAND)
    result = invoke("eval", "loop", str(loop), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["cvc"]["overall"]["cl"] == pytest.approx(2 / 3)
    assert invoke("report", str(loop)).exit_code == 0
    page = (loop / "report.md").read_text()
    assert "| 1 | 6 | 2 | 1 | 2 | 1 |" in page and (loop / "plots" / "loop_transitions.png").is_file()

    st = tmp_path / "selftrain"
    _transitions(st / "iter-1", HAND)
    _transitions(st / "iter-2", {"p1": [(True, True)] * 3 + [(False, False)]})
    result = invoke("eval", "loop", str(st))
    assert result.exit_code == 0 and "iter-1: acc1 0.375" in result.stdout and "iter-2: acc1 0.750" in result.stdout
    assert invoke("report", str(st)).exit_code == 0
    page = (st / "report.md").read_text()
    assert "## iter-1" in page and "## iter-2" in page and (st / "plots" / "selftrain_accuracy.png").is_file()


def test_report_on_an_empty_folder_says_why(tmp_path: Path):
    result = invoke("report", str(tmp_path))
    assert result.exit_code == 2 and "nothing to report" in said(result)


def test_transitions_missing_a_column_name_it(tmp_path: Path):
    pq.write_table(pa.Table.from_pylist([{"problem_id": "p", "sample_index": 0, "round": 1}]),
                   tmp_path / "transitions.parquet")  # fmt: skip
    result = invoke("eval", "loop", str(tmp_path))
    assert result.exit_code == 2 and "row 0, field 'correct_before': missing" in said(result)


def test_critic_metrics_count_an_unreadable_verdict_as_a_miss():
    rows = [{"label": 0, "prediction": None, "final_verdict": None, "final_answer_correct": False, "subset": "s"}]
    m = critic_metrics(rows)
    assert m["verdict_accuracy"] == 0.0 and m["first_error_accuracy"] == 0.0 and m["unparsed"] == 1


def test_evaluate_never_imports_stages_or_the_runner():
    code = (
        "import sys, amc.evaluate, amc.evaluate.report, amc.evaluate.critic_eval, amc.evaluate.loop_metrics\n"
        "bad = [m for m in sys.modules if m.startswith('amc.stages') or m == 'amc.engine.runner']\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_balanced_limit_takes_both_classes_in_file_order(shared_data: Path):
    """ProcessBench lists erroneous solutions first: a plain --limit measures one class, --balanced both."""
    file = shared_data / "processbench" / "gsm8k.json"
    everything = load_items(file)
    plain = load_items(file, limit=9)
    assert all(i.label != -1 for i in plain)  # the first items of the file are all erroneous
    balanced = load_items(file, limit=9, balanced=True)
    wrong, right = [i for i in balanced if i.label != -1], [i for i in balanced if i.label == -1]
    assert (len(wrong), len(right)) == (5, 4)
    assert [i.id for i in wrong] == [i.id for i in everything if i.label != -1][:5]
    assert [i.id for i in right] == [i.id for i in everything if i.label == -1][:4]
    both = load_items(shared_data / "processbench", limit=4, balanced=True)
    assert {(i.subset, i.label == -1) for i in both} == {(s, c) for s in ("gsm8k", "math") for c in (True, False)}
    with pytest.raises(AmcError, match="--balanced needs --limit"):
        load_items(file, balanced=True)
