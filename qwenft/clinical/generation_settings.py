"""How text is generated (``GenerationSettings``), where (``engine``), and how a vLLM server is set up
(``VllmSettings``): the ``generation`` block of ``conf/answer.yaml``, ``evaluate.yaml``, ``serve.yaml`` and
``callbacks/clinical_eval``. Each key's rule and one-line doc are declared once here, beside no heavy import, so
``qwenft.validation`` checks them before a model loads and the engines build from them unchecked."""

from __future__ import annotations

from dataclasses import dataclass, fields

from qwenft.hardware import native_bf16
from qwenft.rules import BOOL, OPT_TEXT, SEED, TEXT, Enum, Float, Int, check_fields, group, setting

ENGINES = ("auto", "hf", "vllm")
ENGINE = Enum(*ENGINES)


@dataclass
class GenerationSettings:
    """Decoding: greedy unless ``do_sample``."""

    max_new_tokens: int = setting(64, Int(1, 32768), "tokens generated at most per text")
    do_sample: bool = setting(False, BOOL, "sample instead of greedy decoding")
    temperature: float = setting(0.7, Float(0, 100, lo_open=True), "sampling temperature (do_sample)")
    top_p: float = setting(0.9, Float(0, 1, lo_open=True), "nucleus sampling mass (do_sample)")
    # bf16 only where the CPU multiplies bf16 natively (AMX / AVX512-BF16): 3.5x slower elsewhere. An engine that
    # loaded its model casts the weights (qwenft.clinical.engines.hf.bf16_weights); a model in training gets autocast
    bf16: bool = setting(rule=BOOL, doc="bf16 weights (default: where the CPU has native bf16)", factory=native_bf16)
    seed: int = setting(0, SEED, "sampling seed: sampled answers are reproducible")

    def __post_init__(self) -> None:
        check_fields(self, "generation")

    @classmethod
    def from_dict(cls, values: dict | None) -> GenerationSettings:
        # ``engine`` and ``vllm`` say where to generate (qwenft.clinical.engines), not how: not decoding settings
        return cls(**{k: v for k, v in (values or {}).items() if k not in ("engine", "vllm")})


@dataclass
class VllmSettings:
    """``generation.vllm``: the vLLM server qwenft starts (or the one at ``url``) and how it is fed.

    ``python``: the interpreter of the vLLM environment (null: ``$QWENFT_VLLM_PYTHON``, then ``.venv-vllm`` in the
    checkout, then ``$QWENFT_CACHE/venv-vllm``, then this interpreter if it imports vllm). ``url``: a server that is
    already running (e.g. the one ``qwenft serve`` prints); it must serve the same model folder. ``compile``:
    torch.compile the model (vLLM's default; on a CPU it doubles the start-up for ~20 % faster decoding), else
    ``--enforce-eager``.
    """

    python: str | None = setting(None, OPT_TEXT, "interpreter of the vLLM environment (null: found, see above)")
    url: str | None = setting(None, OPT_TEXT, "a running vLLM server to use instead of starting one")
    host: str = setting("127.0.0.1", TEXT, "address a started server listens on")
    port: int = setting(0, Int(0, 65535), "port of a started server (0: a free one)")
    kv_cache_gib: float = setting(2.0, Float(0, 1e6, lo_open=True), "CPU KV cache (VLLM_CPU_KVCACHE_SPACE)")
    max_model_len: int | None = setting(None, Int(16, 10**7, null=True), "context length (null: the model's own)")
    parallel: int = setting(8, Int(1, 1024), "prompts kept in flight (evaluate)")
    start_timeout_s: float = setting(900.0, Float(1, 1e6), "seconds a started server may take to come up")
    served_name: str = setting("qwenft", TEXT, "the model's name on the server")
    compile: bool = setting(False, BOOL, "torch.compile the model (slower start, faster decoding)")

    def __post_init__(self) -> None:
        check_fields(self, "generation.vllm")

    @classmethod
    def from_dict(cls, values: dict | None) -> VllmSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values or {}) - known)
        if unknown:  # a library caller's dict; Hydra refuses an unknown key in a config first
            from qwenft.errors import UserError

            raise UserError(f"generation.vllm.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
        return cls(**(values or {}))


@dataclass
class GenerationSchema(GenerationSettings):
    """``generation``: the decoding settings, the engine that runs them and its vLLM settings."""

    engine: str = setting("auto", ENGINE, "auto (vLLM where it runs, else transformers) | hf | vllm")
    vllm: VllmSettings = group(VllmSettings)
