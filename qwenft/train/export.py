"""End-of-run outputs: adapter, tokenizer, a merged full model and a model card, each written atomically.

The merged model is what ``transformers.pipeline``, vLLM (which cannot load trainable-token adapters) and a
plain ``from_pretrained`` read: adapters and trained rows folded in, tied embeddings kept tied, safetensors.
The model card (``README.md`` in ``merged/`` and ``adapter/``) replaces PEFT's empty template with what a reader
of a shared model needs: the base model, the new words and their init, data hashes, metrics and the command. Its
metadata is built with ``huggingface_hub.ModelCardData`` -- license, base model, Hub datasets, and the validation
and test metrics as a ``model-index`` -- so the Hub shows them as it does for any other model.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from omegaconf import DictConfig
from peft import PeftModel, PeftType

from qwenft.adapters.apply import merged_model
from qwenft.atomic import atomic_group
from qwenft.errors import Interrupted, UserError
from qwenft.tokenizer.extend import MANIFEST

log = logging.getLogger(__name__)
CARD = "README.md"


def _is_lora(model) -> bool:
    return isinstance(model, PeftModel) and any(c.peft_type == PeftType.LORA for c in model.peft_config.values())


def command_line() -> str:
    """The command that produced the run, as a user would retype it."""
    verb = os.environ.get("QWENFT_VERB")  # the CLI moves the verb out of sys.argv for Hydra
    return shlex.join(["qwenft", *([verb] if verb else []), *sys.argv[1:]])


#: metrics.json prefixes that become model-index results, and the split each was measured on.
CARD_SPLITS = {"val": "validation", "test": "test"}


def _split_sources(config: DictConfig) -> dict[str, str]:
    """Where each evaluated split came from: the path or Hub id given, or the bundled demo set."""
    data = config.get("data") or {}
    demo = not data.get("train_path")
    return {prefix: str(data.get(f"{prefix}_path") or ("qwenft-demo" if demo else "")) for prefix in CARD_SPLITS}


def hub_datasets(config: DictConfig) -> list[str]:
    """The Hub dataset ids a run trained or was scored on (``owner/name``), for the card's ``datasets``."""
    from qwenft.data.io import hub_source

    data = config.get("data") or {}
    out: list[str] = []
    for key in ("train_path", "val_path", "test_path", "text_path"):
        value = data.get(key)
        if value and hub_source(value):
            repo = "/".join(str(value).removeprefix("hf://datasets/").split("/")[:2]).split("@")[0]
            if repo not in out:
                out.append(repo)
    return out


def eval_results(metrics: dict, config: DictConfig) -> list:
    """The validation and test metrics as ``huggingface_hub.EvalResult`` rows (the card's model-index)."""
    from huggingface_hub import EvalResult

    from qwenft.data.io import hub_source

    sources = _split_sources(config)
    rows = []
    for key, value in sorted(metrics.items()):
        prefix, _, name = key.partition("/")
        if prefix not in CARD_SPLITS or not name or isinstance(value, bool) or not isinstance(value, float | int):
            continue
        source = sources[prefix]
        hub = hub_source(source)
        rows.append(EvalResult(task_type="text-generation", task_name="causal language modeling",
                               dataset_type=source.removeprefix("hf://datasets/") if hub else "local",
                               dataset_name=source or "local data", dataset_split=CARD_SPLITS[prefix],
                               metric_type=name, metric_name=key, metric_value=round(float(value), 6)))
    return rows


def model_card(base_model: str, manifest: dict | None, run_info: dict, metrics: dict, config: DictConfig,
               checkpoint: str = "last") -> str:
    """A Hugging Face model card for ``merged/`` and ``adapter/``: ``ModelCardData`` metadata + markdown."""
    from huggingface_hub import ModelCard, ModelCardData

    words = (manifest or {}).get("words", [])
    model_name = f"{str(base_model).rstrip('/').split('/')[-1]}-qwenft"
    results = eval_results(metrics, config)
    export_cfg = config.get("export") or {}
    data = ModelCardData(license=export_cfg.get("license") or None, base_model=base_model,
                         library_name="transformers", pipeline_tag="text-generation",
                         tags=["qwenft", "qwen2.5", *(["vocabulary-extension"] if words else [])],
                         datasets=hub_datasets(config) or None, model_name=model_name,
                         eval_results=results or None)
    lines = [f"# Fine-tuned {base_model} (qwenft)", "",
             f"- base model: `{base_model}`",
             f"- weights: the `{checkpoint}` checkpoint, step {metrics.get('global_step', '?')}",
             f"- adapter: `{config.peft.method}`" + (f" r={config.peft.r}, alpha={config.peft.alpha}"
                                                     if config.peft.method == "lora" else ""),
             f"- new words: {len(words)}" + (f", init `{manifest.get('init')}`, "
                                             f"{len(manifest.get('new_tokens', []))} new tokens"
                                             if manifest else " (vocabulary not extended)"),
             f"- trainable rows: `{config.tokenizer.trainable_rows}`" if words else "",
             f"- data sha256: {json.dumps(run_info.get('data_sha256', {}))}",
             f"- qwenft commit: `{run_info.get('git_commit')}`" + (" (with uncommitted changes)"
                                                                   if run_info.get("git_dirty") else ""),
             "", "## Command", "", "```bash", run_info.get("command") or command_line(), "```", "", "## Metrics", "",
             "| metric | value |", "|---|---:|"]
    lines += [f"| `{k}` | {v:.4g} |" for k, v in sorted(metrics.items())
              if isinstance(v, float | int) and not isinstance(v, bool)
              and k.startswith(("val/", "test/", "train/loss"))]
    if words:
        lines += ["", "## New words", "", ", ".join(f"`{w}`" for w in words[:200]) + (" …" if len(words) > 200 else "")]
    lines += ["", "Load: `AutoModelForCausalLM.from_pretrained(folder)` and `AutoTokenizer.from_pretrained(folder)`; "
              f"`{MANIFEST}` lists every new token, its id and the pieces it replaced."]
    body = "\n".join(line for line in lines if line is not None) + "\n"
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}").content


def export(model, tokenizer, run_dir: Path, manifest: dict | None, adapter: bool = True,
           card: str | None = None, metrics: dict | None = None, guard: ExportSignals | None = None
           ) -> dict[str, str]:
    """``tokenizer/``, ``adapter/`` (LoRA), ``merged/`` and (given ``metrics``) ``metrics.json``, all or nothing.

    Everything is written into one staging folder first and moved in place at the end (``atomic_group``): a
    SIGTERM, a full disk or an error while writing leaves the previous export whole, never an ``adapter/`` of the
    new step beside a ``merged/`` of the old one. ``guard`` (``ExportSignals``) holds a signal back during the
    final renames. Returns the output folders (also in ``metrics.json`` as ``outputs``).
    """
    lora = adapter and _is_lora(model)  # full FT's trainable-token wrapper alone would be a misleading "adapter"
    out = {name: str(run_dir / name) for name in ("tokenizer", *(("adapter",) if lora else ()), "merged")}
    names = [*out, *(["metrics.json"] if metrics is not None else [])]
    with atomic_group(run_dir, names, tag="export", on_commit=guard.commit if guard else None) as stage:
        tokenizer.save_pretrained(stage / "tokenizer")
        if lora:
            model.save_pretrained(stage / "adapter", safe_serialization=True)
            if card:
                (stage / "adapter" / CARD).write_text(card, encoding="utf-8")
        merged = merged_model(model).eval()
        merged.save_pretrained(stage / "merged", safe_serialization=True)
        tokenizer.save_pretrained(stage / "merged")
        if manifest:
            (stage / "merged" / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        if card:
            (stage / "merged" / CARD).write_text(card, encoding="utf-8")
        if metrics is not None:
            (stage / "metrics.json").write_text(json.dumps({**metrics, "outputs": out}, indent=2))
    return out


class ExportSignals:
    """SIGTERM/SIGINT during an export: stop with ``Interrupted`` (exit 128+N, one line) and export nothing.

    Without it the default action killed the process between two outputs; the README promises an interrupted
    run exports nothing. Once the outputs are being moved in place (``commit``) a signal waits for the renames
    and then stops the process, saying the export is complete.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.committing = False
        self.pending: int | None = None
        self._previous: dict[int, object] = {}

    def commit(self) -> None:
        self.committing = True

    def _handle(self, signum, frame):  # noqa: ANN001
        if self.committing:
            self.pending = signum
            return
        raise Interrupted(signum, f"{Interrupted(signum, '').signal_name} during the export: nothing was exported "
                                  f"(the previous outputs are unchanged); `qwenft export {self.run_dir}` exports "
                                  "the last checkpoint")

    def __enter__(self) -> ExportSignals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                pass
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.pending is not None and exc_type is None:
            raise Interrupted(self.pending, f"{Interrupted(self.pending, '').signal_name} at the end of the export: "
                                            f"the export in {self.run_dir} is complete")


def push_plan(export_cfg: DictConfig, run_dir: Path) -> list[tuple[Path, str]]:
    """(local folder, path in the repo) pairs that ``export.push_to_hub`` uploads: ``merged/`` at the root,
    ``adapter/`` under ``adapter/``. Split out so the folder that would be pushed can be checked offline."""
    if not export_cfg.get("hub_repo_id"):
        raise UserError("export.push_to_hub=true needs export.hub_repo_id=<user>/<name>")
    plan = [(run_dir / "merged", ".")]
    if (run_dir / "adapter").is_dir():
        plan.append((run_dir / "adapter", "adapter"))
    return plan


def publish(export_cfg: DictConfig, run_dir: Path, loggers: list) -> None:
    """Optional sharing after export: the Hub (private by default) and W&B model artifacts."""
    if export_cfg.get("push_to_hub"):
        from huggingface_hub import HfApi

        api = HfApi()
        repo = str(export_cfg.hub_repo_id)
        api.create_repo(repo, private=bool(export_cfg.get("private", True)), exist_ok=True)
        for folder, path_in_repo in push_plan(export_cfg, run_dir):
            api.upload_folder(repo_id=repo, folder_path=str(folder), path_in_repo=path_in_repo,
                              commit_message=f"qwenft export of {run_dir.name}")
        log.info("pushed %s to the Hub as %s", run_dir, repo)
    if export_cfg.get("wandb_artifact"):
        from pytorch_lightning.loggers import WandbLogger

        for lg in loggers:
            if isinstance(lg, WandbLogger):
                import wandb

                art = wandb.Artifact(name=f"model-{lg.experiment.id}", type="model")
                for sub in ("merged", "adapter", "tokenizer"):
                    if (run_dir / sub).is_dir():
                        art.add_dir(str(run_dir / sub), name=sub)
                lg.experiment.log_artifact(art, aliases=["latest", str(export_cfg.get("checkpoint", "last"))])
