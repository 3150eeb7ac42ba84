"""The latency benchmark's arms do the work they claim: same prompts, fixed-length outputs, one call vs many."""

from __future__ import annotations

from experiments.bench import latency


def test_prompt_set_is_summary_plus_four_questions_of_one_vignette():
    prompts, whole = latency.prompt_set()
    assert len(prompts) == 1 + latency.N_QUESTIONS
    scenario = prompts[0].split("\n\n")[0]
    assert all(scenario in p for p in [*prompts, whole]) and whole.count("?") >= latency.N_QUESTIONS


def test_measure_on_tiny_counts_generate_calls(monkeypatch):
    calls: list[int] = []
    real = latency.generate_batch

    def counting(model, tok, prompts, instruct, **kw):  # noqa: ANN001
        calls.append(len(prompts))
        return real(model, tok, prompts, instruct, **kw)

    monkeypatch.setattr(latency, "generate_batch", counting)
    result = latency.measure("tiny", new_tokens=2, repeats=1)
    n = latency.N_QUESTIONS + 1
    # warm-up + 1 timed run per arm: single [1], batched [n], unshared [n], sequential [1]*n, none [1]
    assert calls == [1, 1, n, n, n, n] + [1] * (2 * n) + [1, 1]
    assert all(result[f"{k}_s"] > 0 for k in ("single", "batched", "unshared", "step1", f"step{n}", "sequential",
                                              "none"))
