"""Known upstream warnings that say nothing actionable to a qwenft user, silenced once at CLI start.

Each filter names the exact message; anything else still prints.
"""

from __future__ import annotations

import logging
import os
import warnings

KNOWN = (
    # Lightning: our loader is not a DataLoader on purpose (resumable), and CPU runs have few workers
    r".*does not have many workers which may be a bottleneck.*",
    r".*Your `IterableDataset` has `__len__` defined.*",
    r".*The number of training batches .* is smaller than the logging interval.*",
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*LightningCLI.*",
    # PEFT / transformers chatter about options qwenft sets on purpose
    r".*Already found a `peft_config` attribute in the model.*",
    r".*`torch_dtype` is deprecated.*",
    r".*You are using a model of type .* to instantiate a model of type.*",
    # peft 0.21 reads transformers' renamed property when it wraps a model (qwenft calls the new name itself)
    r".*`is_gradient_checkpointing` is deprecated.*",
)


def quiet_known_warnings() -> None:
    for pattern in KNOWN:
        warnings.filterwarnings("ignore", message=pattern)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in ("httpx", "urllib3", "lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
