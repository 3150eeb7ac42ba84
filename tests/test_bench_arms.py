"""The bench's arms on the tiny model: the baseline recipe trains and reports its work per token; the step
profiler runs the qwenft arm's real step and reports what it profiled. (Speed itself is only in the bench.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_profile_step_on_tiny_reports_the_batch_and_the_matmuls():
    out = subprocess.run([sys.executable, "-m", "experiments.bench.profile_step", "tiny", "--rows", "5"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    batch = re.search(r"batch \((\d+), (\d+)\), (\d+) non-pad tokens, (\d+) label positions", out)
    assert batch, out[:500]
    rows, width, tokens, labels = map(int, batch.groups())
    assert rows == 8 and 0 < labels < tokens <= rows * width  # the bench's batch of 8, completion-only labels
    assert float(re.search(r"self CPU total ([\d.]+) s", out).group(1)) > 0
    assert "aten::mm" in out and "Input Shapes" in out  # ops table and the by-shape table


def test_baseline_arm_trains_the_usual_recipe_and_counts_its_step(tmp_path):
    from experiments.bench.arm import baseline_arm

    stats = baseline_arm("tiny", 2, str(tmp_path))
    assert stats["tokens_per_s"] > 0 and 0 < stats["pad_fraction"] < 1
    assert 0 < stats["step_nonpad_tokens"] and stats["flops_per_step"] > 0
    assert 0 < stats["train_peak_rss_mb"] and stats["val_new_word_ppl"] > 1
