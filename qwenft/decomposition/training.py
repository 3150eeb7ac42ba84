"""How a structured clinical example becomes training examples; the ``decomposition`` group decides.

``none`` trains the whole prompt -> summary + all answers; every other strategy trains what inference under it
generates: one summary example plus one example per question (scenario as context). A sweep over
``decomposition=`` therefore compares training-time decomposition too.
"""

from __future__ import annotations

from qwenft.decomposition.templates import question_prompt, render_response, summary_prompt, whole_prompt


def to_training_examples(example: dict, strategy: str) -> list[dict]:
    scenario, questions, answers = example["scenario"], example["questions"], example["answers"]
    if strategy == "none":
        return [{"prompt": whole_prompt(scenario, questions),
                 "completion": render_response(example["summary"], answers)}]
    out = [{"prompt": summary_prompt(scenario), "completion": example["summary"]}]
    out += [{"prompt": question_prompt(scenario, q), "completion": a} for q, a in zip(questions, answers, strict=True)]
    return out
