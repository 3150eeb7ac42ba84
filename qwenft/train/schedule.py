"""Per-group learning-rate schedules: the new rows can warm up alone, and can keep their lr while the body decays.

The body (LoRA / blocks) and the new embedding rows start from very different places: the body is a pretrained
optimum that a high lr would wreck, the new rows are a guess that needs large steps. Two levers follow, measured
in ``experiments/newword_bench.py`` (see ``experiments/results/newword_bench/``):

* ``rows_warmup_steps=N``: for the first N optimizer steps only the rows train (the body's lr is 0), so the body
  does not adapt to rows that are still wrong; then the body's own schedule (its warm-up included) runs over the
  remaining steps.
* ``rows_schedule=constant``: the rows keep ``rows_lr`` for the whole run instead of following the body's
  warm-up and decay.

Both need a schedule that is a ``LambdaLR`` (transformers' ``get_*_schedule*`` are), or none at all.
"""

from __future__ import annotations

from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from qwenft.errors import UserError


def _constant(step: int) -> float:
    return 1.0


def _delayed(base: Callable[[int], float], steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        return 0.0 if step < steps else base(step - steps)

    return factor


def _lambda_of(sched: LRScheduler | None) -> Callable[[int], float]:
    if sched is None:
        return _constant
    if not isinstance(sched, LambdaLR) or len({id(f) for f in sched.lr_lambdas}) != 1:
        raise UserError(f"tokenizer.rows_warmup_steps / tokenizer.rows_schedule need a scheduler built on LambdaLR "
                        f"(transformers' get_*_schedule*, as in conf/scheduler/), not {type(sched).__name__}")
    return sched.lr_lambdas[0]


def group_schedule(optimizer: Optimizer, make: Callable[[int], LRScheduler] | None, total_steps: int,
                   rows_warmup_steps: int = 0, rows_schedule: str = "shared") -> LRScheduler | None:
    """The scheduler for ``optimizer`` whose groups are named ``body*`` and ``rows`` (``adapters.param_groups``).

    ``make(n)`` builds the configured schedule for a run of ``n`` steps (``None``: a constant lr). With neither
    lever set this is exactly ``make(total_steps)``.
    """
    if rows_warmup_steps == 0 and rows_schedule == "shared":
        return make(total_steps) if make else None
    names = [g.get("name", "") for g in optimizer.param_groups]
    if "rows" not in names:
        raise UserError("tokenizer.rows_warmup_steps / tokenizer.rows_schedule=constant: no new rows train in this "
                        "run (tokenizer=none or tokenizer.trainable_rows=frozen)")
    if rows_warmup_steps >= total_steps:
        raise UserError(f"tokenizer.rows_warmup_steps={rows_warmup_steps} leaves no step for the body in a run of "
                        f"{total_steps} optimizer steps: make it smaller than trainer.max_steps")
    shared = _lambda_of(make(total_steps) if make else None)
    body = _delayed(_lambda_of(make(total_steps - rows_warmup_steps) if make else None), rows_warmup_steps) \
        if rows_warmup_steps else shared
    rows = _constant if rows_schedule == "constant" else shared
    for g in optimizer.param_groups:  # the throwaway schedules above scaled the lrs: start from the base lr again
        g["lr"] = g["initial_lr"] if "initial_lr" in g else g["lr"]
    return LambdaLR(optimizer, [rows if n == "rows" else body for n in names])
