"""The ``qwenft`` console script: ``qwenft VERB key=value ...``.

Each verb is a Hydra app whose root config is ``conf/<verb>.yaml`` and whose body is ``run(cfg)`` in the module
named below, so that every verb takes the same overrides, writes a run directory, and can be imported and
tested without the CLI.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

VERBS: dict[str, tuple[str, str]] = {
    # verb: (root config in conf/, module whose run(cfg) does the work)
    "import-gguf": ("import_gguf", "qwenft.model.gguf_import"),
    "discover": ("discover", "qwenft.tokenizer.discover"),
    "extend": ("extend", "qwenft.tokenizer.extend"),
    "train": ("train", "qwenft.train.run"),
    "answer": ("answer", "qwenft.decomposition.answer"),
    "evaluate": ("evaluate", "qwenft.decomposition.evaluate"),
    "report": ("report", "qwenft.report"),
}


def conf_dir() -> Path:
    """``conf/`` beside the package (editable install / checkout), or ``$QWENFT_CONF``."""
    return Path(os.environ.get("QWENFT_CONF", Path(__file__).resolve().parent.parent / "conf"))


def usage() -> str:
    verbs = "\n".join(f"  {v:<12} conf/{c}.yaml" for v, (c, _) in VERBS.items())
    return f"usage: qwenft VERB [key=value ...] [--help]\n\nverbs (and their root config):\n{verbs}\n"


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    inherited = os.environ.get("QWENFT_VERB")
    if inherited in VERBS and (not argv or argv[0] not in VERBS):
        # a child process re-launched by Lightning's DDP launcher: it repeats the overrides, not the verb
        argv = [inherited, *argv]
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in VERBS:
        print(usage(), file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        raise SystemExit(0 if not argv or argv[0] in ("-h", "--help") else 2)
    verb, rest = argv[0], argv[1:]
    config_name, module_name = VERBS[verb]
    os.environ["QWENFT_VERB"] = verb
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")

    import hydra

    from qwenft.errors import UserError

    target = importlib.import_module(module_name).run

    def run(cfg):  # noqa: ANN001 - Hydra passes a DictConfig
        from hydra.errors import InstantiationException

        try:
            return target(cfg)
        except (UserError, InstantiationException) as err:
            cause = err if isinstance(err, UserError) else err.__cause__  # hydra wraps a target's own errors
            if not isinstance(cause, UserError):
                raise
            print(f"error: {cause}", file=sys.stderr)
            raise SystemExit(2) from None

    app = hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(run)
    sys.argv = [sys.argv[0], *rest]  # a real program path: DDP children are launched from it
    app()


if __name__ == "__main__":
    main()
