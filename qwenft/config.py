"""Where qwenft's Hydra configs live and how library code composes them without the CLI.

The configs ship inside the package (``qwenft/conf``), so a plain ``pip install`` finds them from any directory.
A user's own config folder is added in front with Hydra's ``--config-dir DIR`` (CLI) or ``config_dirs=`` here:
its ``model/mine.yaml`` becomes ``model=mine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"


def conf_dir() -> Path:
    """The shipped config folder (``qwenft/conf``)."""
    return CONF_DIR


def compose(config_name: str, overrides: Sequence[str] = (), config_dirs: Sequence[str | Path] = (),
            return_hydra_config: bool = False) -> DictConfig:
    """``conf/<config_name>.yaml`` with ``overrides``, as the CLI would compose it (minus Hydra's runtime)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    extra = [f"hydra.searchpath=[{','.join('file://' + str(Path(d).resolve()) for d in config_dirs)}]"] \
        if config_dirs else []
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name, overrides=[*extra, *overrides], return_hydra_config=return_hydra_config)
