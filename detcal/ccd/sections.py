"""FITS-style image sections (``"[x1:x2, y1:y2]"``), the convention ccdproc and IRAF use.

A section is 1-based and inclusive, x (column) first; ``:`` or ``*`` is the whole axis; ``""``
means the whole frame. Parsed sections are numpy slices ``(rows, columns)`` of a (ny, nx) frame.
"""

import re

from ..errors import InputError

_SECTION = re.compile(r"^\[\s*([^,\]]*)\s*,\s*([^,\]]*)\s*\]$")


def _axis(text, size, section, path, name):
    text = text.strip()
    if text in ("", ":", "*"):
        return slice(0, size)
    m = re.fullmatch(r"(-?\d+)?\s*:\s*(-?\d+)?", text)
    if not m:
        raise InputError(path, f"{name} section {section!r}: cannot parse {text!r} "
                               "(expected 'first:last', 1-based and inclusive)")
    first = int(m.group(1)) if m.group(1) else 1
    last = int(m.group(2)) if m.group(2) else size
    if first < 1 or last > size or first > last:
        raise InputError(path, f"{name} section {section!r} is outside the frame "
                               f"({first}:{last} on an axis of {size} pixels)")
    return slice(first - 1, last)


def parse_section(section, shape, path="<config>", name="image"):
    """Numpy slices of a FITS-style section within a frame.

    Parameters
    ----------
    section : str   e.g. ``"[513:528, :]"`` (columns 513-528, all rows); ``""`` = whole frame
    shape : (ny, nx) of the frame
    path : file the section is applied to (named in the error)
    name : what the section is ("overscan", "trim") for the error message

    Returns
    -------
    (row_slice, column_slice), both with explicit start/stop (0-based, stop exclusive)

    Raises
    ------
    InputError when the section cannot be parsed or falls outside the frame.
    """
    ny, nx = int(shape[0]), int(shape[1])
    if not section or not str(section).strip():
        return slice(0, ny), slice(0, nx)
    m = _SECTION.match(str(section).strip())
    if not m:
        raise InputError(path, f"{name} section {section!r}: expected '[x1:x2, y1:y2]' "
                               "(FITS convention: 1-based, inclusive, x first)")
    cols = _axis(m.group(1), nx, section, path, name)
    rows = _axis(m.group(2), ny, section, path, name)
    return rows, cols


def section_string(rows, cols):
    """FITS-style string of numpy slices (the inverse of :func:`parse_section`)."""
    return f"[{cols.start + 1}:{cols.stop}, {rows.start + 1}:{rows.stop}]"
