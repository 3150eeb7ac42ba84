"""The ``qwenft`` console script: ``qwenft VERB key=value ...``.

Each verb is a Hydra app whose root config is ``qwenft/conf/<verb>.yaml`` (shipped in the package) and whose
body is ``run(cfg)`` in ``qwenft.commands.<verb>``, so every verb takes the same overrides and writes a run
directory. Hydra's own flags work too: ``--config-dir DIR`` adds a folder of your own configs in front of the
shipped ones (``DIR/model/mine.yaml`` -> ``model=mine``), ``--cfg job`` prints the composed config.
"""

from __future__ import annotations

import importlib
import os
import sys

VERBS: dict[str, tuple[str, str]] = {
    # verb: (root config in qwenft/conf/, module whose run(cfg) does the work)
    "import-gguf": ("import_gguf", "qwenft.commands.import_gguf"),
    "discover": ("discover", "qwenft.commands.discover"),
    "extend": ("extend", "qwenft.commands.extend"),
    "train": ("train", "qwenft.commands.train"),
    "export": ("export", "qwenft.commands.export"),
    "answer": ("answer", "qwenft.commands.answer"),
    "evaluate": ("evaluate", "qwenft.commands.evaluate"),
    "report": ("report", "qwenft.commands.report"),
}


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
    if verb == "export" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest[0] = f"run_dir={rest[0]}"  # qwenft export RUN_DIR
    config_name, module_name = VERBS[verb]
    os.environ["QWENFT_VERB"] = verb
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")

    import hydra

    from qwenft.config import conf_dir
    from qwenft.errors import UserError
    from qwenft.warnings import quiet_known_warnings

    quiet_known_warnings()

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
