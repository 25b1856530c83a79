"""Progress that reads well everywhere, and the known noise of the stack dropped at the source.

:func:`track` replaces ``tqdm.auto`` in the package's loops (same arguments) in the form
:func:`progress_mode` picks. :func:`quiet_noise` (called by ``recsys_utils/__init__``) acts only
inside a Jupyter kernel, where every stderr line becomes a red box.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["MODES", "NOISE", "Progress", "drop_noise", "in_kernel", "progress_mode",
           "quiet_noise", "track"]

#: The forms :func:`progress_mode` chooses from.
MODES = ("widget", "bar", "lines", "off")
PROGRESS_ENV = "RECSYS_PROGRESS"
INTERVAL_ENV = "RECSYS_PROGRESS_INTERVAL"
VERBOSE_ENV = "RECSYS_VERBOSE_LOGS"
DEFAULT_INTERVAL = 30.0
_clock = time.perf_counter  # one name, so that tests can set the time


def in_kernel() -> bool:
    """True inside a Jupyter (ipykernel) kernel, whose stdout/stderr go to the notebook."""
    iostream = sys.modules.get("ipykernel.iostream")
    return iostream is not None and isinstance(sys.stdout, iostream.OutStream)


def progress_mode() -> str:
    """The form progress takes here, one of :data:`MODES` (``RECSYS_PROGRESS`` overrides it;
    ValueError if it names none):

    * ``"widget"``: a kernel a Jupyter server started for a live frontend: a tqdm widget,
      replaced by the summary line at the end, so a saved notebook shows no frozen ``0%``;
    * ``"bar"``: a terminal (stderr is a tty): tqdm's text bar;
    * ``"lines"``: elsewhere (papermill, a pipe, pytest): a heartbeat every
      ``RECSYS_PROGRESS_INTERVAL`` seconds (default 30) and a summary line, e.g.
      ``encoding (float32): 600/600 texts in 12.3 s (48.8 texts/s)``;
    * ``"off"``: nothing."""
    if forced := os.environ.get(PROGRESS_ENV, "").strip().lower():
        if forced not in MODES:
            raise ValueError(f"{PROGRESS_ENV}={forced!r}: expected one of {', '.join(MODES)}")
        return forced
    if in_kernel():
        # A Jupyter server sets JPY_SESSION_NAME for the kernels its frontends open; papermill,
        # nbclient and nbconvert do not, and their saved outputs cannot run widgets.
        return "widget" if os.environ.get("JPY_SESSION_NAME") else "lines"
    try:
        return "bar" if sys.stderr.isatty() else "lines"
    except (AttributeError, ValueError, OSError):  # no stream, or a closed one
        return "lines"


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return float(raw) if raw.strip() else DEFAULT_INTERVAL
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds") from None


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _count(n: float, scale: bool) -> str:
    if not scale:
        return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
    for prefix in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.1f}{prefix}" if prefix else f"{n:.0f}"
        n /= 1000.0
    return f"{n:.1f}T"


def _plural(unit: str, n: float) -> str:
    if n == 1 or not unit.isalpha() or len(unit) < 3 or unit.endswith("s"):
        return unit  # "B", "it" and the like stay as they are
    return unit + "s"


class Progress:
    """One loop's progress over ``iterable`` (or ``total`` units counted with ``update``) in
    the form :func:`progress_mode` picks. ``disable=True`` shows nothing (``None`` means
    ``False``). Made by :func:`track`."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None,
                 desc: str = "", unit: str = "it", disable: bool | None = False,
                 unit_scale: bool = False) -> None:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.n = iterable, total, 0
        self.desc, self.unit, self.unit_scale = desc, unit, unit_scale
        self.postfix: dict[str, str] = {}
        self.closed = False
        self.mode = "off" if disable else progress_mode()
        self.interval = _interval()  # seconds between heartbeat lines in "lines" mode
        self._start = self._last_line = _clock()
        self._bar: Any = None
        self._handle: Any = None  # the widget's display, replaced by the summary at the end
        bar_args = dict(total=total, desc=desc, unit=unit, unit_scale=unit_scale)
        if self.mode == "bar":
            from tqdm.std import tqdm

            self._bar = tqdm(**bar_args, file=sys.stderr, dynamic_ncols=True)
        elif self.mode == "widget":
            try:
                from IPython.display import display
                from tqdm.notebook import tqdm as notebook_tqdm

                self._bar = notebook_tqdm(**bar_args, display=False)
                self._handle = display(self._bar.container, display_id=True)
            except Exception:  # noqa: BLE001 - no ipywidgets or display: lines work anywhere
                self._bar, self._handle = None, None
                self.mode = "lines"

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress was made with total=..., not an iterable")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: float = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines":
            now = _clock()
            if now - self._last_line >= self.interval:
                self._print(self.heartbeat(now))

    def set_postfix(self, ordered_dict: Mapping[str, Any] | None = None, refresh: bool = True,
                    **kwargs: Any) -> None:
        values = {**(ordered_dict or {}), **kwargs}
        self.postfix = {str(k): (f"{v:.4g}" if isinstance(v, float) else str(v))
                        for k, v in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=refresh)

    def write(self, line: str) -> None:
        if self.mode == "bar":
            self._bar.write(line, file=sys.stdout)
            sys.stdout.flush()
        elif self.mode != "off":
            self._print(line)

    def close(self) -> None:
        """End the loop: its summary line, except for a bar (it keeps its last state)."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        if self.mode == "widget" and self._handle is not None:
            # Replace the widget by the summary: live and in the saved notebook.
            self._handle.update({"text/plain": self.summary()}, raw=True)
        elif self.mode in ("lines", "widget"):
            self._print(self.summary())

    def _counted(self) -> str:
        n = _count(self.n, self.unit_scale)
        done = f"{n}/{_count(self.total, self.unit_scale)}" if self.total is not None else n
        return f"{done} {_plural(self.unit, self.total if self.total is not None else self.n)}"

    def _tail(self) -> str:
        tail = ", ".join(f"{k}={v}" for k, v in self.postfix.items())
        return f" - {tail}" if tail else ""

    def heartbeat(self, now: float | None = None) -> str:
        """The line printed while a long loop runs: count, share, time so far and left."""
        elapsed = (_clock() if now is None else now) - self._start
        parts = [self._counted()]
        if self.total:
            parts.append(f"{100 * self.n / self.total:.0f}%")
        parts.append(_duration(elapsed))
        if self.total and self.n:
            parts.append(f"~{_duration(elapsed * (self.total - self.n) / self.n)} left")
        return f"{self.desc}: " + ", ".join(parts) + self._tail()

    def summary(self) -> str:
        """The line that ends the loop: count, wall time, rate, last postfix values."""
        elapsed, speed = _clock() - self._start, ""
        if self.n and elapsed > 0:
            rate = self.n / elapsed
            if rate >= 1 or self.unit_scale:
                shown = _count(rate, True) if self.unit_scale else (
                    f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}")
                speed = f" ({shown} {_plural(self.unit, 2)}/s)"
            else:
                speed = f" ({elapsed / self.n:.3g} s/{self.unit})"
        return f"{self.desc}: {self._counted()} in {_duration(elapsed)}{speed}{self._tail()}"

    def _print(self, line: str) -> None:
        print(line, file=sys.stdout, flush=True)
        self._last_line = _clock()


#: ``track(iterable=None, *, total, desc, unit, disable, unit_scale)``:
#: a :class:`Progress`, called like ``tqdm``.
track = Progress


_TF_CPP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+\] "  # TensorFlow's C++ log prefix
# absl's C++ log prefix; before absl::InitializeLog the time reads 00:00:<unix seconds>
_ABSL = r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "

#: Lines dropped from a kernel's stderr: name -> (pattern, why it is harmless).
NOISE: dict[str, tuple[str, str]] = {
    "oneDNN type fallback": (
        _TF_CPP + r"oneDNN supports DT_\w+ only on platforms with AVX-512\. Falling back",
        "TensorFlow says which kernel library runs an integer op; the result is the same"),
    "absl pre-init notice": (
        r"WARNING: All log messages before absl::InitializeLog\(\) is called "
        r"are written to STDERR$",
        "absl's notice that it has not been configured; precedes ScaNN's INFO lines"),
    "absl INFO": (
        r"I\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ",
        "INFO is never an error: ScaNN's partitioner sizes and timings, converter steps"),
    "ScaNN empty partition": (
        _ABSL + r"Could not normalize centroid due to zero norm or empty or zero-weight partition",
        "k-means left a ScaNN partition empty; the recall sweep measures the index as it is"),
    "TFLite converter flags": (
        _ABSL + r"Ignored (output_format|drop_control_dependency)\.$",
        "TF1-era converter flags the TF2 converter ignores"),
    "TFLite XNNPACK notice": (
        r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",
        "the interpreter says it uses XNNPACK"),
    "TFLite quantizer notice": (
        r"fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, "
        r"output_inference_type: \w+$",
        "the converter prints its quantization settings"),
}
#: Dropped only when the machine has no NVIDIA device (``/dev/nvidia0`` ...): then TensorFlow's
#: CUDA probe fails by design; with a device present, the same line is a real driver problem.
CUDA_PROBE = (_TF_CPP + r"failed call to cuInit", "TensorFlow probes for a GPU on a CPU machine")

_noise_re: re.Pattern | None = None


def _gpu_device_present() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*"))


def _noise_pattern() -> re.Pattern:
    patterns = [p for p, _ in NOISE.values()]
    if not _gpu_device_present():
        patterns.append(CUDA_PROBE[0])
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.MULTILINE)


def drop_noise(text: str) -> str:
    """``text`` without its lines that match :data:`NOISE` (and :data:`CUDA_PROBE` when
    the machine has no NVIDIA device)."""
    global _noise_re
    pattern = _noise_re = _noise_re or _noise_pattern()
    if not pattern.search(text):
        return text
    return "".join(line for line in text.splitlines(keepends=True) if not pattern.match(line))


def _filter_stream(stream: Any) -> bool:
    """Make ``stream`` (the kernel's stderr) drop noise lines from all written to it.

    It moves to a subclass whose ``write`` is a property returning a filtering writer, as
    ipykernel's watcher forwarding C++ logs calls ``self.write``. IPython swaps a recording
    wrapper into ``stream.write`` for each cell and puts back what it found: the property
    keeps such a wrapper behind the filter; putting back a plain or filtering writer ends it.
    """
    cls = type(stream)
    if getattr(cls, "_recsys_quiet", False):
        return False
    base_write = cls.write

    def filtering(target: Any) -> Any:
        def write(text: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(text, str):
                return target(text, *args, **kwargs)
            kept = drop_noise(text)
            return target(kept, *args, **kwargs) if kept else len(text)

        write._recsys_filtering = True  # type: ignore[attr-defined]
        return write

    def get(self: Any) -> Any:
        wrapper = self.__dict__.get("_recsys_write")
        return filtering(wrapper or base_write.__get__(self))

    def set_(self: Any, value: Any) -> None:
        plain = (getattr(value, "__func__", None) is base_write
                 and getattr(value, "__self__", None) is self)
        ours = getattr(value, "_recsys_filtering", False)
        self.__dict__["_recsys_write"] = None if plain or ours else value

    def delete(self: Any) -> None:
        self.__dict__.pop("_recsys_write", None)

    wrapper = stream.__dict__.pop("write", None)  # IPython's, when this runs inside a cell
    stream.__class__ = type(f"Quiet{cls.__name__}", (cls,), {
        "write": property(get, set_, delete), "_recsys_quiet": True, "__module__": __name__})
    if wrapper is not None:
        stream.write = wrapper
    return True


class _Once(logging.Filter):
    """Each distinct message once (object addresses ignored), none below ``min_level``.
    When ``logger`` has a handler (TensorFlow adds one) and so does the root logger, it
    stops propagating, so that only its own handler prints the message."""

    _address = re.compile(r" at 0x[0-9a-fA-F]+")

    def __init__(self, min_level: int = logging.NOTSET, logger: logging.Logger | None = None
                 ) -> None:
        super().__init__()
        self.min_level, self.logger = min_level, logger
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        logger = self.logger
        if (logger is not None and logger.propagate and logger.handlers
                and logging.getLogger().handlers):
            logger.propagate = False
        if record.levelno < self.min_level:
            return False
        key = (record.levelno, self._address.sub("", record.getMessage()))
        new = key not in self.seen
        self.seen.add(key)
        return new


def _once_warnings() -> None:
    """Show each distinct warning (category and text) once. The default filter already means
    "once per place", but libraries reset its memory with every ``catch_warnings``."""
    show = warnings.showwarning
    if getattr(show, "_recsys_once", False):
        return
    seen: set[tuple[type, str]] = set()

    def showwarning(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if (category, str(message)) not in seen:
            seen.add((category, str(message)))
            show(message, category, *args, **kwargs)

    showwarning._recsys_once = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def quiet_noise() -> bool:
    """Inside a Jupyter kernel, unless ``RECSYS_VERBOSE_LOGS=1``: drop :data:`NOISE` from
    stderr, show each warning and TensorFlow (no INFO) / absl log message once, by one
    handler. Returns whether it acted."""
    verbose = os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes")
    if verbose or not in_kernel():
        return False
    _filter_stream(sys.stderr)
    _once_warnings()
    for name, level in (("tensorflow", logging.WARNING), ("absl", logging.NOTSET)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Once) for f in logger.filters):
            logger.addFilter(_Once(level, logger))
    return True
