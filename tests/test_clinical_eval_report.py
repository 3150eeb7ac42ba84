"""experiments/clinical_eval_report.py: the closed-loop table pairs every arm with the untrained model by prompt id."""

from __future__ import annotations

import json

from experiments.clinical_eval_report import report


def _run(path, scores: dict[str, float], ci: tuple[float, float]) -> None:
    """A ``qwenft evaluate`` output folder with one strategy x budget and the given answer_rougeL per prompt id."""
    path.mkdir(parents=True)
    mean = sum(scores.values()) / len(scores)
    row = {"strategy": "decomposition", "budget": "per_question", "n_prompts": len(scores), "same_as": None,
           "answer_rougeL": mean, "format_valid": 1.0,
           "ci": {"answer_rougeL": list(ci), "format_valid": [1.0, 1.0]}}
    (path / "metrics.json").write_text(json.dumps({"rows": [row]}))
    (path / "predictions.jsonl").write_text("".join(
        json.dumps({"id": i, "strategy": "decomposition", "budget": "per_question",
                    "scores": {"answer_rougeL": s, "format_valid": 1.0}}) + "\n" for i, s in scores.items()))


def test_report_pairs_each_arm_with_untrained_on_the_same_prompts(tmp_path):
    untrained = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}
    _run(tmp_path / "synthetic" / "untrained", untrained, (0.1, 0.4))
    # the trained arm saw the prompts in another order and answered one more prompt: pairing is by id
    trained = {"d": 0.9, "c": 0.8, "b": 0.7, "a": 0.6, "e": 0.0}
    _run(tmp_path / "synthetic" / "ext_decomposition", trained, (0.0, 0.9))
    (tmp_path / "synthetic" / "not_a_run").mkdir()  # a folder without metrics.json is not an arm
    table = report(tmp_path)
    assert "## synthetic" in table and "not_a_run" not in table
    assert "| untrained | decomposition | per_question | 4 | 0.250 [0.100, 0.400] | 1.000 [1.000, 1.000] |" in table
    diff = next(line for line in table.splitlines() if line.startswith("| ext_decomposition | decomposition")
                and "*" in line)
    # +0.5 on each of the 4 shared prompts: the interval collapses onto +0.5 and excludes 0
    assert "+0.500 [+0.500, +0.500]*" in diff
    assert "Paired difference to `untrained`" in table
    assert "noext_decomposition" not in table  # no such arm: no empty section for it


def test_extension_arms_are_also_paired_with_the_arm_trained_without_new_words(tmp_path):
    _run(tmp_path / "medquad" / "untrained", {"a": 0.1, "b": 0.1}, (0.1, 0.1))
    _run(tmp_path / "medquad" / "noext_decomposition", {"a": 0.5, "b": 0.5}, (0.5, 0.5))
    _run(tmp_path / "medquad" / "ext_distill_frozen", {"a": 0.3, "b": 0.3}, (0.3, 0.3))
    table = report(tmp_path)
    _, vs_noext = table.split("Paired difference to `noext_decomposition`")
    assert "| ext_distill_frozen | decomposition | per_question | -0.200 [-0.200, -0.200]* |" in vs_noext
    assert "untrained" not in vs_noext  # only extension arms answer "does adding the words help"
