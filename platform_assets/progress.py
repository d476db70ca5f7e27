"""A run's progress for a person at a terminal: one line per asset as Dagster records its materialization.

Dagster's own console logger prints the whole DEBUG event stream; the demo sends that to a log file and shows these
lines instead, so a minute-long full load is not a minute of silence.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

import dagster as dg

PROGRESS_LOGGER = "progress"


class MaterializationLines(logging.Handler):
    """Prints ``elapsed  asset  partition  rows  seconds`` for each materialization event it is handed."""

    def __init__(self, width: int, stream: TextIO | None = None):
        super().__init__(logging.DEBUG)
        self.width, self.stream, self.started = width, stream or sys.stdout, time.perf_counter()

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "dagster_event", None)
        if event is None or not event.is_step_materialization:
            return
        mat = event.step_materialization_data.materialization
        md = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        rows = md.get("dagster/row_count")
        print(
            f"{time.perf_counter() - self.started:7.1f} s  {mat.asset_key.to_user_string():{self.width}s} "
            f"{mat.partition or '':>10s} {f'{rows:,} rows' if rows is not None else '':>14s} "
            f"{md.get('seconds', 0):7.2f} s",
            file=self.stream,
            flush=True,
        )


def with_progress(job: dg.JobDefinition, stream: TextIO | None = None) -> tuple[dg.JobDefinition, dict]:
    """``job`` with Dagster's console logger (DEBUG, on stderr) and the progress lines; the run config enabling both."""
    width = max(len(k.to_user_string()) for k in job.asset_layer.selected_asset_keys)

    @dg.logger
    def progress(_) -> logging.Logger:
        log = logging.Logger("platform.progress", logging.DEBUG)
        log.addHandler(MaterializationLines(width, stream))
        return log

    loggers = {"console": dg.colored_console_logger, PROGRESS_LOGGER: progress}
    run_config = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}, PROGRESS_LOGGER: {}}}
    return job.with_logger_defs(loggers), run_config
