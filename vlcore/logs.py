"""Logging for workflow jobs: every rule logs to its own file (``logs/<rule>/<exp>.log``)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def rule_logging(
    log_path: str | os.PathLike, level: int = logging.INFO
) -> Iterator[logging.Logger]:
    """Send log records (and warnings) to ``log_path`` and stderr for the duration of a job.

    An exception escaping the block is written to the log with its traceback, then re-raised,
    so the log file always says why a job failed.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    handlers = [
        logging.FileHandler(log_path, mode="w", encoding="utf-8"),
        logging.StreamHandler(sys.stderr),
    ]
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
    old_level = root.level
    root.setLevel(level)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    logger = logging.getLogger("vlcore.job")
    try:
        yield logger
    except BaseException:
        logger.exception("job failed")
        raise
    finally:
        logging.captureWarnings(False)
        root.setLevel(old_level)
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
