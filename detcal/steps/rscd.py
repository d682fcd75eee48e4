"""rscd (MIRI): flag the first groups of each integration DO_NOT_USE (jwst 3.0 ``rscd``).

The reset switch charge decay offsets the first groups of MIRI integrations after the first; the
current jwst algorithm (``jwst/rscd/rscd_sub.py``; ``research/jwst_algorithms.md`` section 7) does
no arithmetic, it flags groups:

1. The RSCD reference table ``RSCD_GROUP_SKIP`` gives, for the exposure's (SUBARRAY, READPATT)
   (SUBPRISM is read as SLITLESSPRISM), ``group_skip1`` for integration 1 and ``group_skip`` for
   integrations 2, 3, ... A negative ``group_skip1`` (old files without the column) means 1.
2. NGROUPS < 3: nothing is flagged (S_RSCD = SKIPPED). NGROUPS <= 5: both counts become 1. A count
   that would leave fewer than 3 groups becomes ``max(0, NGROUPS - 3)`` (for integrations 2+ only
   when NINTS > 1).
3. Integration 1 (only when the file starts with it, INTSTART = 1 or absent) uses
   ``group_skip1``; every later integration of the file uses ``group_skip``.
4. Saturation back-off (:func:`skip_counts`): a pixel whose group ``skip + 1`` is SATURATED (and
   group 1 is not) gets fewer flagged groups, ``max(0, s - 2)`` for a first saturated group
   ``s`` (0-based), so that unsaturated groups remain for the fit; such pixels get
   FLUX_ESTIMATED in PIXELDQ.
5. ``groupdq[i, :skip] |= DO_NOT_USE``.

Deliberate differences from jwst 3.0 (both asked for by the issue that added this step): a
(SUBARRAY, READPATT) missing from the table is an :class:`~detcal.errors.InputError` naming the
file (jwst skips the step with a warning), and an exposure in which the rules leave nothing to
flag (a single integration with ``group_skip1 = 0``, as the simulator's table has) ends with
S_RSCD = 'SKIPPED' and a log line saying why (jwst says 'COMPLETE'). The flags themselves are
jwst's, bit for bit.
"""

import logging
import os

import numpy as np

from .. import dqflags
from ..errors import InputError
from ..geometry import family
from .descriptor import Step
from .guards import owned

#: What this step is (detcal.steps.descriptor): the one place the package and the workflow read.
DESCRIPTOR = Step(
    name="rscd", description="MIRI RSCD: flag the first groups of integrations after the first",
    position={"MIRI": 60}, cal_step="S_RSCD", suffix="rscd_step", references=("rscd",),
    keywords=("READPATT",))

#: Reference files (config keys) this step reads.
REFERENCES = DESCRIPTOR.references

#: Old subarray names read as their current ones (as jwst).
RENAMED_SUBARRAYS = {"SUBPRISM": "SLITLESSPRISM"}

log = logging.getLogger("detcal.rscd")

_DNU = np.uint8(dqflags.DO_NOT_USE)
_SAT = np.uint8(dqflags.SATURATED)


def _text(value):
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip()


def _column(table, name):
    """A table column by case-insensitive name, or None."""
    names = {n.lower(): n for n in (table.dtype.names or ())}
    return table[names[name]] if name in names else None


def lookup_group_skip(table, subarray, readpatt, path="<rscd>"):
    """Numbers of groups to flag for (SUBARRAY, READPATT) from a RSCD_GROUP_SKIP table.

    Parameters
    ----------
    table : structured ndarray with columns subarray, readpatt, group_skip[, group_skip1]
            (names case-insensitive; strings or bytes)
    subarray, readpatt : str     the science exposure's SUBARRAY and READPATT
    path : str                   reference name for messages

    Returns
    -------
    (group_skip1, group_skip) : ints as in the table, ``group_skip1 = -1`` when the table has no
    such column (jwst's migration of old files). The first matching row is used.

    Raises
    ------
    InputError : no row for this SUBARRAY/READPATT (the message lists the rows there are).
    """
    sub = _text(subarray).upper()
    sub = RENAMED_SUBARRAYS.get(sub, sub)
    patt = _text(readpatt).upper()
    subs, patts = _column(table, "subarray"), _column(table, "readpatt")
    skip2 = _column(table, "group_skip")
    if subs is None or patts is None or skip2 is None:
        raise InputError(path, f"RSCD_GROUP_SKIP table needs columns subarray, readpatt, group_skip "
                               f"(it has {list(table.dtype.names or ())})")
    skip1 = _column(table, "group_skip1")
    for k in range(len(table)):
        if _text(subs[k]).upper() == sub and _text(patts[k]).upper() == patt:
            return (int(skip1[k]) if skip1 is not None else -1), int(skip2[k])
    rows = sorted({f"{_text(s)}/{_text(p)}" for s, p in zip(subs, patts)})
    raise InputError(path, f"RSCD_GROUP_SKIP has no row for SUBARRAY={sub}, READPATT={patt} "
                           f"(rows: {', '.join(rows) or 'none'})")


def effective_skips(ngroups, nints, skip1, skip2):
    """Apply jwst's NGROUPS rules to the table's counts.

    Parameters
    ----------
    ngroups, nints : int     NGROUPS and the exposure's NINTS (header)
    skip1, skip2 : int       table counts (``skip1 < 0`` -> 1)

    Returns
    -------
    (skip1, skip2, notes) : the counts to apply (None, None when NGROUPS < 3: no flagging), and
    a list of what the rules changed, for the log.
    """
    notes = []
    if skip1 < 0:
        notes.append(f"group_skip1={skip1} (old reference without it) -> 1")
        skip1 = 1
    if ngroups < 3:
        return None, None, [f"NGROUPS={ngroups} < 3: too few groups to flag"]
    if ngroups <= 5:
        if (skip1, skip2) != (1, 1):
            notes.append(f"NGROUPS={ngroups} <= 5: 1 group flagged in every integration")
        skip1 = skip2 = 1
    if ngroups < skip1 + 3:
        new = max(0, ngroups - 3)
        if new != skip1:
            notes.append(f"integration 1: {skip1} -> {new} groups (3 must remain)")
        skip1 = new
    if nints > 1 and ngroups < skip2 + 3:
        new = max(0, ngroups - 3)
        if new != skip2:
            notes.append(f"integrations 2+: {skip2} -> {new} groups (3 must remain)")
        skip2 = new
    return skip1, skip2, notes


def skip_counts(groupdq, skip):
    """Groups to flag per integration and pixel, with jwst's saturation back-off (``flag_rscd``).

    Starting from the check group ``c = skip + 1`` (0-based), while some pixel is SATURATED in
    group ``c`` (and not in group 0) and ``c >= 1``: those pixels lose one flagged group (floor
    0) and ``c`` goes down by one. For saturation that only grows with the group index this
    leaves ``max(0, s - 2)`` flagged groups when the first saturated group ``s <= skip + 1``.

    Parameters
    ----------
    groupdq : ndarray, uint8, shape (n, ngroups, ny, nx)    the integrations to flag
    skip : int >= 0

    Returns
    -------
    counts : ndarray, int, shape (n, ny, nx)     groups to flag
    backed_off : ndarray, bool, shape (ny, nx)   pixels that got fewer than ``skip`` in any
                                                 integration (FLUX_ESTIMATED)
    """
    n, ngroups, ny, nx = groupdq.shape
    counts = np.full((n, ny, nx), int(skip))
    if n == 0:
        return counts, np.zeros((ny, nx), bool)
    min_group = skip + 2                                   # 1-based, as jwst
    group0_sat = (groupdq[:, 0] & _SAT) != 0

    def problem(check):
        # jwst indexes group min_group-1; an index past the last group raises there, so count it
        # as not saturated (that only happens when the NGROUPS rules were bypassed)
        if check >= ngroups:
            return np.zeros((n, ny, nx), bool)
        return ((groupdq[:, check] & _SAT) != 0) & ~group0_sat

    sat = problem(min_group - 1)
    if not sat.any():
        return counts, np.zeros((ny, nx), bool)
    while sat.any() and min_group > 1:
        counts[sat] = np.maximum(counts[sat] - 1, 0)
        min_group -= 1
        sat = problem(min_group - 1)
    backed_off = np.any(counts < skip, axis=0)
    return np.maximum(counts, 0), backed_off


def flag_groups(groupdq, pixeldq, skip1, skip2, nints_total, intstart=1, out=None):
    """Flag the RSCD-affected groups (steps 3-5 of the module docstring).

    Parameters
    ----------
    groupdq : ndarray, uint8, shape (nints, ngroups, ny, nx)   the file's integrations
    pixeldq : ndarray, uint32, shape (ny, nx)
    skip1, skip2 : int       counts after :func:`effective_skips`
    nints_total : int        NINTS of the exposure (header); integrations 2+ are flagged only if > 1
    intstart : int           INTSTART: 1-based number of the file's first integration
    out : ndarray, uint8, shape of ``groupdq``, optional   where to write the new GROUPDQ; may be
                             ``groupdq`` itself (in place: no new cube)

    Returns
    -------
    groupdq : ndarray, uint8     ``out`` or a new array, with DO_NOT_USE added
    pixeldq : ndarray, uint32    new array with FLUX_ESTIMATED on backed-off pixels
    info : dict   ``flagged`` (groups flagged per integration, int list; -1 = not processed),
                  ``backed_off`` (pixels), ``one_group`` (pixels left with no flagged group after a
                  back-off), ``skips`` ({'int1': n or None, 'int2+': n or None})
    """
    if out is None:
        groupdq = np.array(groupdq, dtype=np.uint8, copy=True)
    else:
        if out is not groupdq:
            np.copyto(out, groupdq)
        groupdq = out
    pixeldq = np.array(pixeldq, dtype=np.uint32, copy=True)
    nints, ngroups = groupdq.shape[:2]
    info = {"flagged": [-1] * nints, "backed_off": 0, "one_group": 0,
            "skips": {"int1": None, "int2+": None}}
    backed = np.zeros(pixeldq.shape, bool)
    blocks = []
    if intstart == 1 and nints:
        blocks.append((slice(0, 1), skip1, "int1"))
    first_later = 1 if intstart == 1 else 0
    if nints_total > 1 and first_later < nints:
        blocks.append((slice(first_later, nints), skip2, "int2+"))
    for sel, skip, name in blocks:
        info["skips"][name] = int(skip)
        counts, back = skip_counts(groupdq[sel], skip)
        backed |= back
        if back.any():
            info["one_group"] += int(np.any(counts == 0, axis=0).sum())
        block = groupdq[sel]                               # a view: flagged in place
        for g in range(min(int(skip), ngroups)):           # counts <= skip: only these groups
            block[:, g] |= np.where(counts > g, _DNU, np.uint8(0))
        for i in range(*sel.indices(nints)):
            info["flagged"][i] = int(skip)
    if backed.any():
        pixeldq[backed] |= np.uint32(dqflags.FLUX_ESTIMATED)
    info["backed_off"] = int(backed.sum())
    return groupdq, pixeldq, info


def run(ramp, refs):
    """Apply the RSCD flagging to a :class:`detcal.io.Ramp` (updated and returned).

    ``refs['rscd']``: RSCD Reference (``extras['table']`` = RSCD_GROUP_SKIP). Needs READPATT and
    SUBARRAY (InputError naming the file otherwise). Sets S_RSCD = 'SKIPPED' when nothing is
    flagged by rule (non-MIRI data, NGROUPS < 3, or no integration with a count > 0) and logs why.
    """
    meta = ramp.meta("rscd")
    ref = refs["rscd"]
    if family(meta["INSTRUME"]) != "MIRI":
        log.warning("rscd: %s is %s data; the RSCD flagging is for MIRI only: skipped",
                    ramp.path, meta["INSTRUME"])
        ramp.header["S_RSCD"] = "SKIPPED"
        return ramp
    table = (ref.extras or {}).get("table")
    if table is None:
        raise InputError(ref.path, "RSCD reference has no RSCD_GROUP_SKIP table")
    nints, ngroups = ramp.data.shape[:2]
    nints_total = meta["NINTS"]
    intstart = ramp.get("INTSTART", 1) or 1
    table_skip1, table_skip2 = lookup_group_skip(table, meta["SUBARRAY"], meta["READPATT"], ref.path)
    skip1, skip2, notes = effective_skips(ngroups, nints_total, table_skip1, table_skip2)
    ramp.header["R_RSCD"] = os.path.basename(ref.path)
    where = (f"rscd: {meta['DETECTOR']} {meta['SUBARRAY']}/{meta['READPATT']}, table "
             f"group_skip1={table_skip1}, group_skip={table_skip2}")
    for note in notes:
        log.info("%s: %s", where, note)
    if skip1 is None:
        log.info("%s: nothing flagged (S_RSCD = SKIPPED)", where)
        ramp.header["S_RSCD"] = "SKIPPED"
        return ramp
    gdq = ramp.groupdq         # in place when the ramp owns its GROUPDQ (no new cube)
    ramp.groupdq, ramp.pixeldq, info = flag_groups(gdq, ramp.pixeldq, skip1, skip2, nints_total,
                                                   intstart, out=owned(gdq, np.uint8))
    applied = [s for s in info["skips"].values() if s]
    if not applied:
        why = ("single-integration exposure: RSCD affects the integrations after the first, and "
               f"the table asks for group_skip1={skip1} groups of integration 1"
               if nints_total == 1 else "every applicable count is 0")
        log.info("%s: %s; nothing flagged (S_RSCD = SKIPPED)", where, why)
        ramp.header["S_RSCD"] = "SKIPPED"
        return ramp
    log.info("%s, NGROUPS=%d, NINTS=%d, INTSTART=%d: first %s group(s) of integration 1 and %s of "
             "integrations 2+ flagged DO_NOT_USE; %d pixel(s) backed off for saturation "
             "(FLUX_ESTIMATED), %d of them with no group flagged", where, ngroups, nints_total,
             intstart, "no" if info["skips"]["int1"] is None else info["skips"]["int1"],
             "none" if info["skips"]["int2+"] is None else info["skips"]["int2+"],
             info["backed_off"], info["one_group"])
    return ramp
