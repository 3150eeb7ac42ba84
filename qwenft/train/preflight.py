"""Keys that reach libraries, checked before any data or model is loaded.

``qwenft.validation`` knows qwenft's own keys; a key added with ``+`` (``+trainer.bogus_flag=5``) or a module
name (``peft.target_modules=[no_such_proj]``) is only understood by the library it is passed to, which said so
with a traceback after the model had loaded. Here each ``_target_`` node's keys are matched against the
signature of what it builds (Lightning's ``Trainer``, callbacks, loggers, the optimizer...), and LoRA's target
modules against the module names of the model's architecture, built from its config on the meta device.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf

from qwenft.errors import UserError

HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}
#: what each part of the train config builds with ``instantiate`` (``logger.*``, ``callbacks.*``: each entry)
TARGET_ROOTS = ("trainer", "model", "optim", "scheduler", "callbacks", "logger")
#: module classes LoRA can adapt (PEFT's LoRA layers)
LORA_TYPES = ("Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D", "MultiheadAttention")


def check(cfg: DictConfig) -> None:
    """Every check of this module; the first problem is one ``UserError`` line."""
    check_target_kwargs(cfg)
    check_target_modules(cfg)


def _nodes(tree: Any, path: str) -> list[tuple[str, dict]]:
    """``(dotted path, node)`` of every dict with a ``_target_`` in ``tree`` (lists included)."""
    found = []
    if isinstance(tree, dict):
        if isinstance(tree.get("_target_"), str):
            found.append((path, tree))
        for k, v in tree.items():
            if not str(k).startswith("_"):
                found += _nodes(v, f"{path}.{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            found += _nodes(v, f"{path}[{i}]")
    return found


def check_target_kwargs(cfg: DictConfig) -> None:
    """A key the built object does not take (``+trainer.bogus_flag=5``) is refused, naming the key and, when one
    is close, the argument meant. Targets that take ``**kwargs`` accept anything and are not checked."""
    from hydra.utils import get_object

    tree = OmegaConf.to_container(cfg, resolve=False)
    for root in TARGET_ROOTS:
        for path, node in _nodes(tree.get(root), root):
            target = node["_target_"]
            try:
                obj = get_object(target)
            except Exception as err:  # noqa: BLE001 - ImportError, AttributeError...: the user's _target_
                raise UserError(f"{path}._target_={target}: cannot import it ({str(err).splitlines()[0][:120]})") \
                    from None
            try:
                params = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue  # a builtin without a signature: nothing to check against
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                continue
            known = set(params) | HYDRA_KEYS
            for key in node:
                if key in known:
                    continue
                close = difflib.get_close_matches(str(key), [p for p in params if p != "self"], n=2, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                value = str(node[key])
                value = value if len(value) <= 40 else value[:37] + "..."
                raise UserError(f"{path}.{key}={value}: {target} takes no argument {key!r}{hint}")


def check_target_modules(cfg: DictConfig) -> None:
    """``peft.target_modules``: each name must match a module LoRA can adapt, as PEFT matches them (the whole
    dotted name, or its end after a dot). Skipped where the architecture is not known without loading."""
    peft = cfg.get("peft")
    if not isinstance(peft, DictConfig) or peft.get("method") != "lora" or not peft.get("target_modules"):
        return
    from qwenft.model.sources import architecture, module_names

    config = architecture(cfg.model)
    if config is None:
        return
    modules = module_names(config)
    adaptable = sorted({n.rsplit(".", 1)[-1] for n, t in modules.items() if t.__name__ in LORA_TYPES})
    arch = (getattr(config, "architectures", None) or [config.__class__.__name__.replace("Config", "")])[0]
    for name in peft.target_modules:
        matched = {n: t for n, t in modules.items() if n == name or n.endswith(f".{name}")}
        if not matched:
            close = difflib.get_close_matches(str(name), adaptable, n=2, cutoff=0.6)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise UserError(f"peft.target_modules: {name!r} is no module of {arch}; {hint}LoRA can adapt: "
                            f"{', '.join(adaptable)}")
        kinds = {t.__name__ for t in matched.values()}
        if not kinds & set(LORA_TYPES):
            raise UserError(f"peft.target_modules: {name!r} is a {'/'.join(sorted(kinds))} in {arch}, which LoRA "
                            f"cannot adapt; name its layers instead: {', '.join(adaptable)}")


def check_best_export(cfg: DictConfig, has_val: bool) -> None:
    """``export.checkpoint=best`` exports the best checkpoint kept at validation: without a validation split, a
    best-checkpoint callback or a validation before ``max_steps``, none is ever kept, and the run found out
    after training. Refused before any loading instead."""
    export = cfg.get("export")
    if not isinstance(export, DictConfig) or not export.get("enabled") or str(export.get("checkpoint")) != "best":
        return
    if not has_val:
        raise UserError("export.checkpoint=best: no validation split, so no best checkpoint is ever kept; set "
                        "data.val_path=FILE, or export.checkpoint=last")
    monitored = [n for n, node in (cfg.get("callbacks") or {}).items() if isinstance(node, DictConfig)
                 and str(node.get("_target_", "")).endswith("ModelCheckpoint") and node.get("monitor")]
    if not monitored:
        raise UserError("export.checkpoint=best: no callback keeps a best checkpoint (callbacks.best_checkpoint is "
                        "off); turn it on, or export.checkpoint=last")
    trainer = cfg.get("trainer") or {}
    every, steps = trainer.get("val_check_interval"), trainer.get("max_steps")
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    if isinstance(every, int) and not isinstance(every, bool) and trainer.get("check_val_every_n_epoch") is None \
            and isinstance(steps, int) and steps > 0 and every > steps * accumulate:
        raise UserError(f"export.checkpoint=best: trainer.val_check_interval={every} is past trainer.max_steps="
                        f"{steps}, so no validation runs and no best checkpoint is kept; lower the interval, or "
                        "export.checkpoint=last")
