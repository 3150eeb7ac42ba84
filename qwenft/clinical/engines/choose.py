"""Choosing and opening the engine ``generation.engine: auto | hf | vllm`` asks for.

* ``hf``: the loaded ``transformers`` model, one batched ``generate`` per stage with the shared-prefix prefill of
  ``qwenft.clinical.generate``. Works for every model, the in-memory ``tiny`` one and a model being trained.
* ``vllm``: a vLLM OpenAI-compatible server that qwenft starts on 127.0.0.1 from its own environment
  (``.venv-vllm``: vLLM pins ``transformers<5.20``, qwenft needs ``>=5.24``, so the two cannot share one) and
  talks to over HTTP (``qwenft.clinical.engines.vllm``). Prompts are sent as token ids that qwenft builds with its
  own tokenizer and chat template, so both engines read the same tokens; vLLM's prefix caching replaces the
  hand-made shared-prefix prefill. It needs the model as a folder on disk.
* ``auto``: ``vllm`` where it is installed, this machine can run it and the model is a folder; else ``hf``, with
  one line on stderr saying why.

Every engine has the same small surface: ``complete(prompts, settings[, counts]) -> texts`` (one user message per
prompt, greedy unless ``settings.do_sample``), ``close()``, and what the answering code reads off a loaded model
(``tokenizer``, ``instruct``, ``name``, ``context_length``). ``parallel`` says how many prompts may be in flight
at once (``qwenft evaluate`` answers that many concurrently): 1 for ``hf``, whose model is not thread-safe.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qwenft.clinical.engines.base import Engine
from qwenft.clinical.engines.hf import HFEngine, InMemory, bf16_weights
from qwenft.clinical.generation_settings import ENGINE, GenerationSettings, VllmSettings
from qwenft.errors import UserError

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ settings


@dataclass
class EngineChoice:
    """``generation`` split into the engine's name, its vLLM settings and the decoding settings."""

    engine: str = "auto"
    vllm: VllmSettings = field(default_factory=VllmSettings)
    settings: GenerationSettings = field(default_factory=GenerationSettings)

    @classmethod
    def from_generation(cls, gen: dict | None) -> EngineChoice:
        gen = dict(gen or {})
        engine = str(gen.pop("engine", "auto") or "auto")
        if not ENGINE.accepts(engine):  # a library caller's dict (the CLI checked it against GenerationSchema)
            raise UserError(f"generation.engine={engine!r}: must be {ENGINE.describe()}")
        return cls(engine, VllmSettings.from_dict(gen.pop("vllm", None)), GenerationSettings.from_dict(gen))


# ------------------------------------------------------------------------------------------- the model folder


def model_folder(model_cfg) -> str | None:  # noqa: ANN001 - DictConfig or dict of conf/model/*.yaml
    """The folder (or hub id) vLLM loads for a model config, without loading the model; None when the model
    only exists in memory (``tiny``). ``offline`` is imported from its GGUF first if it is not there yet."""
    get = model_cfg.get
    target = str(get("_target_", ""))
    if target.endswith(".offline"):
        folder = Path(str(get("cache_dir"))).expanduser().resolve()
        if not (folder / "model.safetensors").exists():
            from qwenft.model.gguf_import import import_gguf

            import_gguf(folder)
        return str(folder)
    if target.endswith(".pretrained"):
        if get("trust_remote_code"):
            return None  # vLLM would run the repository's code too: leave such models to hf
        name = str(get("name_or_path"))
        local = Path(name).expanduser()
        # absolute: the vLLM server runs in the temp dir, where a relative folder would be read as a hub repo id
        return str(local.resolve()) if local.is_dir() else name
    return None


# ---------------------------------------------------------------------------------------------- choosing


def notice(text: str) -> None:
    """One line on stderr (stdout carries answers)."""
    print(f"qwenft: {text}", file=sys.stderr, flush=True)


def resolve(choice: EngineChoice, model_cfg) -> tuple[str, str | None, str | None]:  # noqa: ANN001
    """(engine name, model folder for vLLM, vLLM interpreter). ``vllm`` asked for explicitly and not possible is
    a ``UserError``; ``auto`` falls back to ``hf`` with a one-line notice."""
    from qwenft.clinical.engines.vllm import find_python, unsupported_reason

    if choice.engine == "hf":
        return "hf", None, None
    folder = model_folder(model_cfg)
    python = find_python(choice.vllm.python)
    if choice.vllm.url:
        python = python or sys.executable  # not started by us: only the URL is used
    why = None
    if folder is None:
        why = (f"model {model_cfg.get('_target_', '?').rsplit('.', 1)[-1]} has no folder on disk "
               "(vLLM loads a model folder)")
    elif python is None:
        why = ("vLLM is not installed (no .venv-vllm: `make setup` installs it, QWENFT_SKIP_VLLM=1 skips it; "
               "or set QWENFT_VLLM_PYTHON / generation.vllm.python)")
    elif not choice.vllm.url:
        why = unsupported_reason()
    if why is None:
        return "vllm", folder, python
    if choice.engine == "vllm":
        raise UserError(f"generation.engine=vllm: {why}")
    notice(f"generation.engine=auto: {why}; using hf")
    return "hf", None, None


def open_engine(gen: dict | None, model_cfg=None, loaded=None, log_dir: str | Path | None = None,  # noqa: ANN001
                check: Callable[[Engine], None] | None = None) -> Engine:
    """The engine ``generation`` asks for, started. ``loaded`` (a ``Loaded``) is used by ``hf`` when given;
    otherwise ``hf`` instantiates ``model_cfg``. ``check(engine)`` runs once the tokenizer and context length are
    known but before a vLLM server starts (prompt checks). The caller closes it (``with open_engine(...)``)."""
    choice = EngineChoice.from_generation(gen)
    if model_cfg is None and loaded is None:
        raise ValueError("open_engine needs model_cfg or loaded")
    name, folder, python = resolve(choice, model_cfg) if model_cfg is not None else ("hf", None, None)
    if name == "hf":
        if loaded is None:
            from hydra.utils import instantiate

            loaded = instantiate(model_cfg)
            bf16_weights(loaded.model, choice.settings.bf16)
        engine = HFEngine(loaded)
        if check is not None:
            check(engine)
        return engine
    from qwenft.clinical.engines.vllm import VllmEngine

    engine = VllmEngine.prepare(folder, choice.vllm, instruct=bool(model_cfg.get("instruct", True)))
    if check is not None:
        try:
            check(engine)
        except BaseException:
            engine.close()
            raise
    return engine.launch(python, bf16=choice.settings.bf16, log_dir=log_dir)


def decoding(gen: dict | None) -> dict:
    """``generation`` without the engine keys: what ``GenerationSettings`` and the answering functions take."""
    return {k: v for k, v in (gen or {}).items() if k not in ("engine", "vllm")}


def cache_settings(gen: dict | None, engine: Engine | None) -> dict:
    """What of ``generation`` decides a prediction (``qwenft evaluate``'s resume key): the decoding settings, and
    the engine when it is not ``hf`` -- bf16 vLLM and HF may differ after the first tokens (README "Engines")."""
    out = decoding(gen)
    if engine is not None and engine.name != "hf":
        out["engine"] = engine.name
    return out


def open_engine_for_model(gen: dict | None, model, tokenizer, instruct: bool) -> Engine:  # noqa: ANN001
    """An engine for a model in memory (``ClinicalEval`` during training). ``hf`` uses it as it is; ``vllm``
    writes its merged weights (adapters and trained rows folded into a copy) and the tokenizer to a temp folder
    and serves that, removed again on ``close()``. Costly on a CPU: see README "Engines"."""
    choice = EngineChoice.from_generation(gen)
    if choice.engine == "hf":
        return HFEngine(InMemory(model, tokenizer, instruct))
    from qwenft.clinical.engines.vllm import VllmEngine, find_python, unsupported_reason

    python = find_python(choice.vllm.python)
    why = "vLLM is not installed" if python is None and not choice.vllm.url else (
        None if choice.vllm.url else unsupported_reason())
    if why is not None:
        if choice.engine == "vllm":
            raise UserError(f"generation.engine=vllm: {why}")
        notice(f"generation.engine=auto: {why}; using hf")
        return HFEngine(InMemory(model, tokenizer, instruct))
    import copy
    import shutil
    import tempfile

    from qwenft.adapters.apply import merged_model

    folder = tempfile.mkdtemp(prefix="qwenft-weights-")
    try:
        merged_model(copy.deepcopy(model)).save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        engine = VllmEngine.prepare(folder, choice.vllm, instruct=instruct).launch(python, bf16=choice.settings.bf16)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    engine.remove_on_close = folder
    return engine
