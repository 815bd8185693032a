"""Console output of the CLI: the search's progress bar and the ``show`` text.

:class:`TqdmProgress` shows one bar over the whole search: ``gen 3/12``, evaluations done of the
expected total (population x generations), elapsed time and an ETA from the time per newly
evaluated candidate (candidates answered from the cache or replayed from the journal count as
done but do not shorten the estimate). While the bar is open, the library's log lines go through
``tqdm.write`` so that they appear above the bar instead of breaking it.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

from dalp_moo.evaluation.record import EvalRecord
from dalp_moo.log import logger
from dalp_moo.results.view import RunView, format_value, with_unit


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class _BarHandler(logging.Handler):
    """Writes what ``inner`` (a stream handler) would write, through ``tqdm.write`` on the same
    stream: the bar is cleared, the line printed, the bar redrawn below it."""

    def __init__(self, inner: logging.StreamHandler, tqdm_class: Any) -> None:
        super().__init__(inner.level)
        self.inner = inner
        self.tqdm_class = tqdm_class
        self.setFormatter(inner.formatter)
        for f in inner.filters:
            self.addFilter(f)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.tqdm_class.write(self.format(record), file=self.inner.stream)
        except Exception:  # never let logging break the search
            self.handleError(record)


@contextlib.contextmanager
def log_through_tqdm(tqdm_class: Any) -> Iterator[None]:
    """While open, the library logger's stream handlers write through ``tqdm.write`` (log
    lines appear above progress bars instead of breaking them); restored afterwards."""
    originals = list(logger.handlers)
    swapped = [_BarHandler(h, tqdm_class) if type(h) is logging.StreamHandler else h for h in originals]
    for h, new in zip(originals, swapped, strict=True):
        if new is not h and getattr(h, "_dalp_cli", False):
            new._dalp_cli = True  # type: ignore[attr-defined]
    logger.handlers = swapped
    try:
        yield
    finally:
        logger.handlers = [h.inner if isinstance(h, _BarHandler) and h in swapped else h for h in logger.handlers]


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class TqdmProgress:
    """One progress bar over all generations, with an ETA across generations.

    ``total`` is the expected number of evaluation requests (population x generations; a
    generation with fewer offspring ends the bar early, which :meth:`close` accounts for);
    ``generations`` the number of generations shown in the bar's label. Use it as a context
    manager, or call :meth:`close` at the end.
    """

    def __init__(self, objectives: tuple = (), total: int | None = None, generations: int | None = None,
                 file: Any = None) -> None:
        self.objectives = objectives
        self.total = total
        self.generations = generations
        self.file = file or sys.stderr
        self.bar: Any = None
        self.generation = 0
        self.n_new = 0  #: candidates evaluated (not from the cache) so far
        self.t_new = 0.0  #: seconds spent on them (from the first new batch's start)
        self._t_batch: float | None = None
        self._redirect: contextlib.ExitStack | None = None
        self._last = ""

    # -- the Progress protocol ----------------------------------------------------------------
    def batch_start(self, n_new: int, n_cached: int) -> None:
        from tqdm import tqdm

        self.generation += 1
        if self.bar is None:
            self.bar = tqdm(total=self.total or n_new + n_cached, unit="eval", dynamic_ncols=True, leave=True,
                            file=self.file, bar_format=BAR_FORMAT)
            self._redirect = contextlib.ExitStack()
            self._redirect.enter_context(log_through_tqdm(tqdm))
        elif self.total is None:  # no expected total: grow it batch by batch
            self.bar.total = (self.bar.total or 0) + n_new + n_cached
        of = f"/{self.generations}" if self.generations else ""
        cached = f", {n_cached} cached" if n_cached else ""
        self.bar.set_description_str(f"gen {self.generation}{of} ({n_new} new{cached})")
        self._t_batch = time.perf_counter() if n_new else None
        self._refresh()

    def evaluated(self, record: EvalRecord, cached: bool) -> None:
        if self.bar is None:
            return
        if not cached:
            self.n_new += 1
            if self._t_batch is not None:
                now = time.perf_counter()
                self.t_new += now - self._t_batch
                self._t_batch = now
            if record.ok:
                self._last = f"{record.arch_id} " + " ".join(
                    format_value(record.metrics.get(o.key), o.unit) + (f" {o.unit}" if o.unit == "ms" else "")
                    for o in self.objectives)
            else:
                self.bar.write(f"  {record.arch_id} {record.status}: {record.reason}", file=self.file)
        self.bar.update(1)
        self._refresh()

    def batch_end(self) -> None:
        self._t_batch = None

    # -- display ------------------------------------------------------------------------------
    def eta_s(self) -> float | None:
        """Seconds left: remaining evaluations x seconds per new evaluation (None before the
        first new evaluation or without a total)."""
        if self.bar is None or not self.bar.total or self.n_new == 0:
            return None
        return max(0, self.bar.total - self.bar.n) * self.t_new / self.n_new

    def _refresh(self) -> None:
        eta = self.eta_s()
        parts = [f"ETA {_clock(eta)}" if eta is not None else "ETA -"]
        if self._last:
            parts.append(self._last)
        self.bar.set_postfix_str(", ".join(parts), refresh=True)

    def close(self) -> None:
        """Close the bar (its total set to what was done) and restore the log handlers."""
        if self.bar is not None:
            if self.bar.total and self.bar.n < self.bar.total:
                self.bar.total = self.bar.n
            self._last = ""
            self._refresh()
            self.bar.close()
            self.bar = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- show ---------------------------------------------------------------------------------------
def show_data(view: RunView) -> dict[str, Any]:
    """What ``show --json`` prints: the state, the summary (natural units, full precision),
    the front, the history and the warnings."""
    summary = dict(view.summary)
    summary.pop("elapsed_s", None)
    front = view.front_table().to_dict("records")
    return {
        "run": str(view.path),
        "state": {"finished": view.state.finished, "running": view.state.running, "label": view.state.label,
                  "generations_done": view.state.generations_done, "generations": view.state.generations},
        "problem": view.cfg.problem, "seed": view.cfg.search.seed, "backend": view.backend_label(),
        "emulated": view.emulated, "summary": summary, "front": front,
        "history": view.history.to_dict("records"), "warnings": view.warnings,
    }


def show_text(view: RunView) -> str:
    """The ``show`` text: state, counts, best candidate and front with rounded figures."""
    s = view.summary
    lines = [f"run: {view.path}" + ("" if view.state.finished else f"  [{view.state.label.upper()}]"),
             f"problem: {view.cfg.problem}, {view.cfg.search.algorithm}, seed {view.cfg.search.seed}, population "
             f"{view.cfg.search.population} x {view.cfg.search.generations} generations; backend "
             f"{view.backend_label()}",
             f"evaluations: {s['evaluations']} ({s['unique_architectures']} architectures, {s['failed']} failed, "
             f"{s['infeasible']} infeasible)"]
    ref = ", ".join(f"{k} {format_value(v, next((o.unit for o in view.objectives if o.key == k), ''))}"
                    for k, v in s["hypervolume_reference"].items())
    lines.append(f"Pareto front: {s['front_size']} candidates; hypervolume {s['hypervolume']:.4f} "
                 f"(reference point: {ref})")
    best = s.get("best_metrics")
    if best:
        shown = ", ".join(f"{o.name} {with_unit(best.get(o.key), o.unit)}" for o in view.objectives)
        tag = " (emulated)" if view.emulated else ""
        lines.append(f"best{tag}: {s['best_arch_id']}: {shown}")
    else:
        lines.append("best: none (no feasible candidate)")
    if not view.state.finished:
        lines.append(f"{view.state.label}; continue with: python -m dalp_moo run --resume {view.path}"
                     if not view.state.running else f"{view.state.label} (a process holds the run folder)")
    for w in view.warnings:
        lines.append(f"warning: {w}")
    if view.front:
        table = view.front_table()
        units = {o.key: o.unit for o in view.objectives}
        for key, unit in units.items():
            if key in table:
                table[key] = [format_value(v, unit) for v in table[key]]
        table = table.rename(columns={o.key: o.key + (f" ({o.unit})" if o.unit not in ("", "parameters") else "")
                                      for o in view.objectives})
        lines.append("")
        lines.append(table.to_string(index=False))
    return "\n".join(lines)
