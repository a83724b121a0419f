"""What a SiteFactorHandler returns, checked and made ready for C.

Factors are signed ints as sprio shows them; the shim adds NICE_OFFSET.
This module is the one place that clamps them to what Slurm can store
([lib.SPM_FACTOR_MIN, lib.SPM_FACTOR_MAX]), with one log line per call.
"""
from __future__ import annotations

import array
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["FactorError", "install", "check_set", "check_update", "check_aligned"]

FACTOR_MIN = FACTOR_MAX = KEEP = 0
_UINT32_MAX = 0xFFFFFFFF


class FactorError(ValueError):
    """The handler's answer cannot be used; the message says why."""


def install(lib: Any) -> None:
    global FACTOR_MIN, FACTOR_MAX, KEEP
    FACTOR_MIN, FACTOR_MAX = lib.SPM_FACTOR_MIN, lib.SPM_FACTOR_MAX
    KEEP = lib.SPM_FACTOR_KEEP


def describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _is_int(t: type) -> bool:
    return issubclass(t, int) and not issubclass(t, bool)


def _clamp(value: int) -> int:
    return FACTOR_MIN if value < FACTOR_MIN else FACTOR_MAX if value > FACTOR_MAX else value


def clamp_note(job_id: int, value: int, count: int = 1) -> str:
    """One warning for `count` clamped factors, naming the first."""
    more = f" ({count - 1} more factor(s) clamped too)" if count > 1 else ""
    return (f"warning: JobId={job_id}: site factor {value} is out of range "
            f"[{FACTOR_MIN}, {FACTOR_MAX}]; using {_clamp(value)}{more}")


def check_set(value: Any, job_id: int) -> tuple[int | None, str | None]:
    """set()'s answer -> (factor or None, clamp warning or None).
    Raises FactorError for a wrong type."""
    if value is None:
        return None, None
    if not _is_int(type(value)):
        raise FactorError(f"set() returned {describe(value)}; expected an int or None")
    value = int(value)
    clamped = _clamp(value)
    return clamped, (clamp_note(job_id, value) if clamped != value else None)


def check_update(result: Any, cap: int, clamp: bool = True
                 ) -> tuple[array.array[int], array.array[int], str | None]:
    """update()'s answer -> (job ids, factors, clamp warning or None).
    clamp=False: the factors as given (a handlers= directory's, added up
    before the one clamp).

    The mapping is read once, into a private dict (a handler's own thread
    cannot change it under us), and every count is checked against `cap`,
    the room C gave, before anything is copied.  Raises FactorError."""
    if not isinstance(result, Mapping) and not hasattr(result, "keys"):
        raise FactorError(f"got {describe(result)}")
    try:
        snap = dict(result)
    except Exception as e:
        raise FactorError(f"reading {describe(result)} failed: {type(e).__name__}: {e}") from None
    if len(snap) > cap:
        raise FactorError(f"update() returned {len(snap)} factors for {cap} pending jobs")
    keys, values = snap.keys(), snap.values()
    if not all(map(_is_int, set(map(type, keys)))) or \
            not all(map(_is_int, set(map(type, values)))):
        for k, v in snap.items():
            if not _is_int(type(k)) or not _is_int(type(v)):
                raise FactorError(f"first bad entry {describe(k)}: {describe(v)}")
    if snap and (min(keys) < 0 or max(keys) > _UINT32_MAX):
        bad = min(keys) if min(keys) < 0 else max(keys)
        raise FactorError(f"job id {bad} is out of range")
    ids = array.array("I", keys)
    note = None
    if not clamp:
        vals = array.array("q", values)
    elif snap and (min(values) < FACTOR_MIN or max(values) > FACTOR_MAX):
        out = [(j, v) for j, v in snap.items() if v < FACTOR_MIN or v > FACTOR_MAX]
        note = clamp_note(out[0][0], out[0][1], len(out))
        vals = array.array("q", map(_clamp, values))
    else:
        vals = array.array("q", values)
    if not len(ids) == len(vals) <= cap:   # never past C's arrays
        raise FactorError(f"inconsistent answer ({len(ids)} ids, {len(vals)} factors, room for {cap})")
    return ids, vals, note


_INT_FORMATS = frozenset("bBhHiIlLqQnN")


def is_aligned(result: Any) -> bool:
    """update() returned factors by batch index (a sequence or an integer
    buffer), not a mapping by job id."""
    return not isinstance(result, Mapping) and not hasattr(result, "keys")


def in_batch_order(result: Any, count: int, job_ids: Callable[[], list[Any]]) -> list[Any] | None:
    """A dict whose keys are exactly the batch's job ids, in batch order
    (what ``{j.job_id: f(j) for j in jobs}`` builds): its values, so that
    they are applied by position, without a job id lookup per entry.  None
    for anything else (the mapping path then reads and checks it).
    `job_ids()` gives the batch's job ids as a list."""
    if type(result) is not dict or len(result) != count or not count:
        return None
    snap = result.copy()                  # read once, like check_update
    if len(snap) != count or list(snap) != job_ids():
        return None
    vals = list(snap.values())
    if not all(map(_is_int, set(map(type, vals)))):
        return None                       # check_update names the bad entry
    return vals


def check_aligned(result: Any, count: int, job_ids: Callable[[], Any],
                  clamp: bool = True) -> tuple[Any, str | None]:
    """update()'s answer as one factor per job of the batch, in batch order
    -> (int64 factors, with KEEP for None; clamp warning or None).
    Accepts a list/tuple of int or None, or any 1-D buffer of integers
    (array.array, memoryview, numpy array).  `job_ids()` gives the batch's
    job ids, for the warning.  clamp=False: the factors as given.  Raises
    FactorError."""
    if isinstance(result, (str, bytes, bytearray)):
        raise FactorError(f"got {describe(result)}")
    try:
        mv = memoryview(result)
    except TypeError:
        mv = None
    if mv is not None:
        fmt = mv.format.lstrip("@=")
        if mv.ndim != 1 or fmt not in _INT_FORMATS:
            raise FactorError(f"got a buffer of format {mv.format!r} and {mv.ndim} dimension(s) "
                              "(factors by batch index must be integers, one per job)")
        if len(mv) != count:
            raise FactorError(f"got {len(mv)} factors by batch index for {count} pending jobs")
        if fmt in "qln" and mv.itemsize == 8:
            vals = mv if mv.c_contiguous else array.array("q", mv)
        else:
            vals = None
            seq: Any = mv.tolist()
    else:
        if not isinstance(result, (list, tuple)):
            raise FactorError(f"got {describe(result)}")
        if len(result) != count:
            raise FactorError(f"got {len(result)} factors by batch index for {count} pending jobs")
        seq, vals = result, None
    if vals is None:
        types = set(map(type, seq))
        has_none = type(None) in types
        if not all(_is_int(t) for t in types if t is not type(None)):
            for i, v in enumerate(seq):
                if v is not None and not _is_int(type(v)):
                    raise FactorError(f"first bad entry at index {i}: {describe(v)} "
                                      "(expected an int, or None to leave the job as it is)")
        if has_none:
            seq = [KEEP if v is None else v for v in seq]
    else:
        seq = vals
    note = None
    if count and clamp:
        if vals is None and has_none:
            lo = min((v for v in seq if v != KEEP), default=None)
        else:
            lo = min(seq)
        hi = max(seq)
        if (lo is not None and lo < FACTOR_MIN) or hi > FACTOR_MAX:
            bad = [i for i, v in enumerate(seq) if v != KEEP and not FACTOR_MIN <= v <= FACTOR_MAX]
            ids = job_ids()
            note = clamp_note(ids[bad[0]], seq[bad[0]], len(bad))
            seq = [v if v == KEEP else _clamp(v) for v in seq]
            vals = None
    if vals is None:
        vals = array.array("q", seq)
    return vals, note
