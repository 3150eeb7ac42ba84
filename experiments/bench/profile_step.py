"""Where one qwenft training step's time goes: torch.profiler over a real forward+backward, grouped by kind.

    python -m experiments.bench.profile_step {tiny|offline} [--rows 15]

Trains one step of the bench's qwenft arm (so optimizer state and PEFT wrapping are exactly the bench's), then
profiles one more forward+backward on a training batch. Ops are grouped by operator and input shape, because the
shape says which layer it is (e.g. ``[tokens, 896] x [4864, 896]`` is an MLP projection, ``[labels, 896] x
[151936, 896]`` the head at label positions). The README's profile summary is read from this table.
"""

from __future__ import annotations

import argparse
import tempfile

from torch.profiler import ProfilerActivity, profile

from experiments.bench.arm import qwenft_train, training_step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=["tiny", "offline"])
    p.add_argument("--rows", type=int, default=15)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        _, trained = qwenft_train(args.model, 1, tmp)
        batch, step = training_step(trained.module)
        step()  # warm-up outside the profile
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            step()
    labels = int((batch["labels"] != -100).sum())
    print(f"batch {tuple(batch['input_ids'].shape)}, {int(batch['attention_mask'].sum())} non-pad tokens, "
          f"{labels} label positions")
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"self CPU total {total / 1e6:.2f} s")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=2 * args.rows))


if __name__ == "__main__":
    main()
