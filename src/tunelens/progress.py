"""Progress within long loops, and quiet third-party libraries: the one place for both.

Progress: code that walks many items (a curation step over 52k records) wraps the walk in
``track(items, label)``. Without a reporter installed that is the plain iterable; inside
``reporting(callback)`` the callback gets ``(label, done, total)`` now and then (about every
1% and at the end), and the caller decides how to show it (``tunelens.data.curate`` draws a rich
bar with an ETA). ``advance(label, done, total)`` reports work that is not a Python loop.

Quiet: ``quiet_libraries(verbose)`` silences transformers', datasets', peft's, accelerate's and
huggingface_hub's logging, progress bars ("Loading weights") and FutureWarning / DeprecationWarning
noise unless ``verbose``. The CLI's root callback calls it once per command (``--verbose``
undoes it). Warnings tunelens itself raises or logs (a truncated example, a skipped item) are
not touched.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
Reporter = Callable[[str, int, int], None]

_reporter: ContextVar[Reporter | None] = ContextVar("tunelens_progress_reporter", default=None)


@contextmanager
def reporting(callback: Reporter) -> Iterator[None]:
    """Send every ``track`` / ``advance`` inside this block to ``callback(label, done, total)``."""
    token = _reporter.set(callback)
    try:
        yield
    finally:
        _reporter.reset(token)


def advance(label: str, done: int, total: int) -> None:
    """Report ``done`` of ``total`` to the installed reporter, if any."""
    callback = _reporter.get()
    if callback is not None:
        callback(label, done, total)


def track(items: Iterable[T], label: str = "", total: int | None = None) -> Iterator[T]:
    """``items``, reporting progress to the installed reporter about every 1% (no reporter: no cost)."""
    callback = _reporter.get()
    if callback is None:
        yield from items
        return
    if total is None:
        total = len(items) if isinstance(items, Sized) else 0
    every = max(1, total // 100)
    done = 0
    callback(label, 0, total)
    for item in items:
        yield item
        done += 1
        if done % every == 0:
            callback(label, done, total)
    if done % every:
        callback(label, done, total)


# -- quiet libraries --------------------------------------------------------------------------
_LOGGERS = ("transformers", "datasets", "peft", "accelerate", "huggingface_hub", "trl", "torch.distributed",
            "sentence_transformers", "filelock", "urllib3", "httpx")
# Only these libraries' own warning categories: tunelens's warnings and others' real problems stay.
_NOISY_MODULES = r"(transformers|datasets|peft|accelerate|huggingface_hub|trl|torch)(\..*)?"


_added_filters: list[tuple] = []  # the warning filters quiet_libraries put in, so --verbose can take them out


def quiet_libraries(verbose: bool = False) -> None:
    """Library logging, progress bars and Future/Deprecation warnings off (``verbose``: all back on)."""
    level = logging.WARNING if verbose else logging.ERROR  # verbose: the libraries' own default
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(level)
    for f in _added_filters:
        if f in warnings.filters:
            warnings.filters.remove(f)
    _added_filters.clear()
    if verbose:
        for var in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
            os.environ.pop(var, None)
    else:
        # read by libraries imported later (and by child processes such as accelerate's workers)
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        before = list(warnings.filters)
        # deprecation notices are for the code that calls a library, not for the person running tunelens
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=_NOISY_MODULES)
        _added_filters.extend(f for f in warnings.filters if f not in before)
        getattr(warnings, "_filters_mutated", lambda: None)()  # drop caches of already-warned call sites
    _set_library_switches(verbose)


def _set_library_switches(verbose: bool) -> None:
    """The libraries' own verbosity and progress-bar switches, for those already imported or cheap
    to import (transformers is imported here only if something imported it already)."""
    import sys

    tf = sys.modules.get("transformers")
    if tf is not None:
        from transformers.utils import logging as tf_logging

        (tf_logging.enable_progress_bar if verbose else tf_logging.disable_progress_bar)()
        tf_logging.set_verbosity(logging.WARNING if verbose else logging.ERROR)
    # huggingface_hub's switch (not its environment variable, which --verbose could not undo in the
    # same process); transformers takes its bars' state from it when it is imported
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    (enable_progress_bars if verbose else disable_progress_bars)()
    ds = sys.modules.get("datasets")
    if ds is not None:
        from datasets.utils.logging import disable_progress_bar, enable_progress_bar

        (enable_progress_bar if verbose else disable_progress_bar)()
