"""Callbacks (each one file of ``conf/callbacks/``): new-word perplexity and clinical scores at each validation,
per-step history on disk, a save on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from qwenft.metrics.newword import NewWordPerplexity, new_word_nll

log = logging.getLogger(__name__)


@dataclass
class RunInputs:
    """What a run hands the callbacks it builds from config (``connect``), so that none of them reaches into the
    trainer, the module or the data module for it."""

    tokenizer: Any
    words: list[str]
    instruct: bool = True
    heldout_texts: list[str] = field(default_factory=list)  # the new-word metrics' held-out text
    test_texts: list[str] = field(default_factory=list)  # the test split's text, scored after fit
    val_records: list[dict] = field(default_factory=list)  # clinical validation records (ClinicalEval)


class NewWordMetrics(pl.Callback):
    """Per-word perplexity of the new words + bits per byte on held-out text (comparable across tokenizers).

    The words, tokenizer and held-out texts are the run's, handed over by ``connect`` once the callback is built
    from config. Each rank scores its share of the texts and the sums meet in
    ``NewWordPerplexity`` (a torchmetrics Metric reduced by sum), so DDP neither repeats the work on every rank
    nor reports a single rank's numbers. A run without a validation split still ends with these numbers: they
    are computed once at the end of training.
    """

    def __init__(self, max_texts: int = 32) -> None:
        self.max_texts = max_texts
        self.texts: list[str] = []
        self.test_texts: list[str] = []  # the test split's text, scored after fit (``trainer.test``)
        self.words: list[str] = []
        self.tokenizer = None
        self.latest: dict[str, float] = {}

    def connect(self, run: RunInputs) -> None:
        """The run's words, tokenizer and held-out texts, handed over once the callback is built."""
        self.words, self.tokenizer = list(run.words), run.tokenizer
        self.texts = list(run.heldout_texts)[: self.max_texts] if self.words else []
        self.test_texts = list(run.test_texts)[: self.max_texts] if self.words else []

    def evaluate(self, trainer: pl.Trainer | None, module: pl.LightningModule, texts: list[str] | None = None,
                 prefix: str = "val") -> dict[str, float]:
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        texts = self.texts if texts is None else texts
        stats = new_word_nll(module.model, self.tokenizer, texts[rank::world], self.words)
        metric = NewWordPerplexity().to(module.device)
        metric.update(stats)
        values = {k: float(v) for k, v in metric.compute().items()}  # synced (summed) across ranks
        occurrences = float(metric.occurrences) if world == 1 else float(
            trainer.strategy.reduce(torch.tensor(float(stats.occurrences), device=module.device), reduce_op="sum"))
        out = {f"{prefix}/bits_per_byte": values["bits_per_byte"]}
        if occurrences:  # no new word in the text: a perplexity of exp(0) would be a lie
            out.update({f"{prefix}/new_word_ppl": values["new_word_ppl"],
                        f"{prefix}/new_word_nll": values["new_word_nll"]})
        return out

    def on_test_epoch_end(self, trainer, module):
        if self.test_texts:
            for k, v in self.evaluate(trainer, module, self.test_texts, prefix="test").items():
                module.log(k, v, batch_size=1, sync_dist=False)

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking or not self.texts:
            return
        self.latest = self.evaluate(trainer, module)
        for k, v in self.latest.items():
            module.log(k, v, batch_size=1, sync_dist=False)  # already identical on every rank

    def on_train_end(self, trainer, module):
        if self.texts and not self.latest:  # no validation ran (no val split, or interval past max_steps)
            self.latest = self.evaluate(trainer, module)
            for lg in trainer.loggers:
                lg.log_metrics(self.latest, step=trainer.global_step)


class History(pl.Callback):
    """``history.jsonl`` in the run dir: what ``qwenft report`` plots, readable without W&B.

    Each (step, kind) appears once, kind being ``train`` or ``val``. A resumed run redoes the steps after its
    checkpoint; at its start the rows past the checkpoint's step are dropped (rewritten atomically) and rows
    already there are not written twice, so a curve never doubles back. A last line cut short by a kill is
    dropped too.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._kept: set[tuple[float, str]] = set()  # rows from before a resume

    @staticmethod
    def _kind(row: dict) -> str:
        return "val" if any(k.startswith("val/") for k in row) else "train"

    def on_train_start(self, trainer, module):
        if trainer.global_rank != 0 or trainer.global_step == 0 or not self.path.is_file():
            return
        from qwenft.atomic import atomic_write_text

        rows = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill
            step = row.get("step") if isinstance(row, dict) else None
            if isinstance(step, int | float) and step <= trainer.global_step:
                rows.append(row)
        self._kept = {(r["step"], self._kind(r)) for r in rows}
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in rows))
        log.info("history.jsonl: resumed at step %d, kept %d rows", trainer.global_step, len(rows))

    def _write(self, trainer, prefix: str) -> None:
        if trainer.global_rank != 0 or trainer.sanity_checking:
            return
        row = {"step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)})
        if len(row) > 1 and (row["step"], self._kind(row)) not in self._kept:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")

    def on_validation_end(self, trainer, module):
        self._write(trainer, "val/")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step % max(trainer.log_every_n_steps, 1) == 0:
            self._write(trainer, "train/")


class ValidateOnResume(pl.Callback):
    """Run the validation that was due at the step a resumed run starts from, when the old run never logged it.

    ``checkpoints/last.ckpt`` is saved at the end of a training step, before that step's validation; a process
    killed during (or just before) that validation left no ``val`` row for the step, and Lightning, restarting
    after the step, skips the validation as if it had run. This runs it once, where Lightning would have.
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_start(self, trainer, module):
        if trainer.global_step != self.step or trainer.sanity_checking:
            return
        log.info("resumed at step %d, whose validation the interrupted run did not finish: running it", self.step)
        connector = trainer._logger_connector  # as Lightning's training epoch loop runs a validation inside fit
        first_loop_iter = getattr(connector, "_first_loop_iter", None)
        trainer.validating = True
        trainer.fit_loop.epoch_loop.val_loop.run()
        trainer.training = True
        if hasattr(connector, "_first_loop_iter"):
            connector._first_loop_iter = first_loop_iter


def validation_due(step: int, trainer_cfg, history: Path) -> bool:  # noqa: ANN001 - DictConfig
    """Whether a validation was due after ``step`` (an integer ``val_check_interval`` counted in batches across
    epochs, Lightning's rule with ``check_val_every_n_epoch=null``) and ``history`` holds no ``val`` row for it."""
    every, per_epoch = trainer_cfg.get("val_check_interval"), trainer_cfg.get("check_val_every_n_epoch")
    if step <= 0 or isinstance(every, bool) or not isinstance(every, int) or per_epoch is not None:
        return False
    if (step * int(trainer_cfg.get("accumulate_grad_batches") or 1)) % every:
        return False
    for line in history.read_text(encoding="utf-8", errors="replace").splitlines() if history.is_file() else []:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("step") == step and any(str(k).startswith("val/") for k in row):
            return False
    return True


class SaveOnSignal(pl.Callback):
    """SIGTERM/SIGINT (a scheduler's preemption, Ctrl-C): finish the batch, save ``last.ckpt``, stop.

    ``received`` tells ``train()`` the run was interrupted: it then raises ``Interrupted`` (exit 128+N) instead of
    exporting the weights of step N as if they were the final model. A second signal while stopping kills the
    process the default way (the checkpoint writer leaves nothing half-written: see ``qwenft.atomic``).
    """

    def __init__(self, ckpt_path: Path) -> None:
        self.ckpt_path = ckpt_path
        self.received: int | None = None
        self.saved_step: int | None = None
        self._previous: dict[int, object] = {}

    def on_train_start(self, trainer, module):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. some launchers): leave signals alone
                pass

    def _handle(self, signum, frame):  # noqa: ANN001
        if self.received is not None:  # asked twice: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.received is not None and self.saved_step is None:
            log.warning("signal %d: saving %s and stopping", self.received, self.ckpt_path)
            trainer.save_checkpoint(self.ckpt_path)
            self.saved_step = trainer.global_step
            trainer.should_stop = True

    def on_train_end(self, trainer, module):
        self._restore()

    def teardown(self, trainer, module, stage):  # also after an exception: never leave our handler behind
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)
            except ValueError:
                pass
        self._previous.clear()


class ClinicalEval(pl.Callback):
    """Clinical-answer scores (ROUGE-L, F1, new-term recall...) on a few validation prompts at each validation.

    Generation is slow on CPU, hence a small subset (``n_prompts``; 0 = off). Records are the run's clinical
    validation split (none: the callback stays idle), handed over with the tokenizer and new words by ``connect``.
    ``generation`` holds the same keys as ``answer``'s (``max_new_tokens``, ``bf16``, ...). The prompts and
    answers are clinical text: they go to a W&B table only when ``log_text=true``.
    """

    def __init__(self, strategy, n_prompts: int = 4, log_text: bool = False, generation: dict | None = None) -> None:
        self.strategy, self.n_prompts, self.log_text = strategy, int(n_prompts), bool(log_text)
        self.gen = dict(generation or {"max_new_tokens": 64})
        self.gen.setdefault("engine", "hf")  # the model in memory; vllm costs a weights export + server start
        self.records: list[dict] = []
        self.tokenizer, self.instruct, self.words = None, True, []  # the run's, from connect()

    def connect(self, run: RunInputs) -> None:
        """The run's clinical validation records, tokenizer and new words, handed over once the callback is built."""
        self.records = list(run.val_records)[: max(self.n_prompts, 0)]
        self.tokenizer, self.instruct, self.words = run.tokenizer, run.instruct, list(run.words)

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking or not self.records or self.tokenizer is None or trainer.global_rank != 0:
            return
        from qwenft.clinical.engines import open_engine_for_model
        from qwenft.clinical.parse import Parsed
        from qwenft.clinical.stages import answer
        from qwenft.metrics.clinical import aggregate, score_prediction

        scores, samples = [], []
        # generation.engine: hf (default) answers with the model in memory; vllm serves its merged weights
        with open_engine_for_model(self.gen, module.model, self.tokenizer, self.instruct) as engine:
            for rec in self.records:
                resp, trace = answer(Parsed(rec["scenario"], rec["questions"]), self.strategy, engine.model,
                                     self.tokenizer, self.instruct, None, gen=self.gen)
                scores.append(score_prediction(resp, rec, trace, new_words=self.words))
                samples.append([trainer.global_step, rec["scenario"], resp.to_text()])
        for k, v in aggregate(scores).items():
            if not math.isnan(v):
                module.log(f"val/clinical_{k}", v, batch_size=1, rank_zero_only=True)
        if self.log_text:
            for lg in trainer.loggers:
                if isinstance(lg, pl.loggers.WandbLogger):
                    lg.log_table("val/clinical_samples", columns=["step", "scenario", "response"], data=samples)
