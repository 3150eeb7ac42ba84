"""The clinical-answer metric as a Hugging Face ``evaluate`` module, loadable offline from its folder:

    import evaluate
    from qwenft.metrics import clinical_answer_path
    metric = evaluate.load(clinical_answer_path())
    metric.compute(predictions=["Start metformin."], references=["Metformin is first-line."], new_words=[[]])

It wraps the same functions ``qwenft evaluate`` uses (ROUGE-L with stemming, SQuAD token F1, coverage, new-term
recall), so a user's own harness (or ``evaluate.combine``) reports exactly qwenft's numbers.
"""

import datasets
import evaluate

from qwenft.metrics.clinical import new_term_recall, rouge_l, token_f1

_DESCRIPTION = "Per-answer ROUGE-L, SQuAD token F1, coverage and new-term recall, averaged over answers."
_KWARGS = """
Args:
    predictions: list of answer strings.
    references: list of reference answer strings.
    new_words: optional list (one per prediction) of the new words the reference uses.
Returns:
    rougeL, f1, coverage, new_term_recall (NaN when no reference uses a new word), n.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class ClinicalAnswer(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, new_words=None):
        n = len(predictions)
        words = new_words or [[] for _ in range(n)]
        recalls = [new_term_recall(p, r, w) for p, r, w in zip(predictions, references, words, strict=True)]
        recalls = [x for x in recalls if x == x]  # NaN: the reference has none of the new words
        return {
            "rougeL": sum(rouge_l(p, r) for p, r in zip(predictions, references, strict=True)) / n if n else 0.0,
            "f1": sum(token_f1(p, r) for p, r in zip(predictions, references, strict=True)) / n if n else 0.0,
            "coverage": sum(bool(p.strip()) for p in predictions) / n if n else 0.0,
            "new_term_recall": sum(recalls) / len(recalls) if recalls else float("nan"),
            "n": n,
        }
