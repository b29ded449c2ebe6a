"""What a training run prints: each line once, ptrain's own on the console, the libraries' chatter in train.log.

Lightning gives its `lightning` logger a console handler of its own at import and lets records propagate too, so
under Hydra's logging (a console and a file handler on the root) every Lightning INFO line is printed twice.
`tidy_library_logs` removes Lightning's handler when the root has handlers (a `ptrain train` run; in a notebook or
a test without logging set up Lightning's stays); `ConsoleFilter` (on the console handler of
conf/hydra/job_logging/ptrain.yaml) keeps libraries' INFO lines off the console, so they reach train.log only."""

from __future__ import annotations

import logging
import sys
import warnings

#: loggers whose INFO lines are for train.log: Lightning's device and loop notices, transformers' loading notes
LIBRARY_LOGGERS = ("lightning", "pytorch_lightning", "transformers", "datasets", "torch", "urllib3", "httpx")
#: progress lines (`ptrain.progress.ProgressLog`): on the console only when no progress bar is drawn there
PROGRESS_LOGGER = "ptrain.progress"

#: library deprecation notices that concern the libraries' own internals, not anything a user can change
#: (lightning 2.6 with torch 2.13: its pytree helper uses an API torch deprecated)
QUIET_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",)


class ConsoleFilter(logging.Filter):
    """Console lines: warnings and errors from anyone, INFO from ptrain; progress lines only when stdout is not a
    terminal (in a terminal the progress bar shows progress; in a file, as under SLURM, the bar draws only its
    final state and these lines are all there is)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if record.name == PROGRESS_LOGGER or record.name.startswith(PROGRESS_LOGGER + "."):
            return not stdout_is_terminal()
        return not any(record.name == name or record.name.startswith(name + ".") for name in LIBRARY_LOGGERS)


def stdout_is_terminal() -> bool:
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


def tidy_library_logs() -> None:
    """Remove Lightning's own console handler where the root logger has handlers (they print its records already),
    hide the library deprecation notices in QUIET_WARNINGS, and, when stdout is not a terminal, transformers'
    weight-loading bars (in a file each is a line of carriage returns). Called before the backbone is loaded."""
    import lightning  # noqa: F401  (its import adds the handler removed here)
    from transformers.utils import logging as transformers_logging

    if not stdout_is_terminal():
        transformers_logging.disable_progress_bar()

    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)
            logger.propagate = True
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
