"""Detector geometry: orientation, amplifier (output) layout and reference pixels.

The one definition of amplifier geometry in detcal. Arrays on disk are in the science (DMS)
orientation; FASTAXIS/SLOWAXIS say how to turn them into the detector frame, where output k
of an H2RG reads the column stripe ``[k*w, (k+1)*w)`` (``w = nx/NOUTPUTS``) with alternating
fast-scan direction (k even: increasing column, k odd: decreasing), and MIRI output k reads
every 4th column starting at k.

Full frame: NIR 2048x2048 with a 4-pixel reference border; MIRI 1024 rows x 1032 columns with
4 reference columns on each side. A file with ``SUBARRAY = 'FULL'`` whose array is smaller than
that (the simulator's mini detectors) is treated as a full frame of its own size.
"""

from dataclasses import dataclass

import numpy as np

from . import keywords
from .errors import InputError

NREF = 4
FULL_FRAME = {"NIR": (2048, 2048), "MIRI": (1024, 1032)}
MIRI_REF_COLUMNS = 4
MIRI_NOUTPUTS = 4


def family(instrument):
    """Instrument family that decides step order and geometry: ``'MIRI'`` or ``'NIR'``."""
    inst = str(instrument).strip().upper()
    if inst == "MIRI":
        return "MIRI"
    if inst in ("NIRCAM", "NIRISS", "NIRSPEC", "FGS"):
        return "NIR"
    raise ValueError(f"unsupported INSTRUME {instrument!r} (expected NIRCAM, NIRISS, NIRSPEC, FGS or MIRI)")


def to_detector(a, fastaxis, slowaxis):
    """View of ``a`` (..., ny, nx) in the detector frame (as jwst's science_detector_frame_transform)."""
    sf, ss = np.sign(fastaxis), np.sign(slowaxis)
    if abs(fastaxis) == 1:
        return a[..., ::ss, ::sf]
    return a[..., ::sf, ::ss].swapaxes(-1, -2)


def to_science(a, fastaxis, slowaxis):
    """Inverse of :func:`to_detector`."""
    sf, ss = np.sign(fastaxis), np.sign(slowaxis)
    if abs(fastaxis) == 1:
        return a[..., ::ss, ::sf]
    return a.swapaxes(-1, -2)[..., ::sf, ::ss]


@dataclass(frozen=True)
class Geometry:
    """Where a (sub)array sits on its detector and how it is read out.

    All index ranges are 0-based, in the science frame unless a name says ``detector``.
    """

    family: str
    shape: tuple            # (ny, nx) of the array in the file
    full_shape: tuple       # (ny, nx) of the full frame in the science frame
    start: tuple            # (y0, x0) of the array in the full frame (SUBSTRT2-1, SUBSTRT1-1)
    noutputs: int
    fastaxis: int
    slowaxis: int

    @classmethod
    def from_header(cls, header, shape, path="<header>"):
        """Build from a primary header (typed access) and the array's (ny, nx)."""
        meta = {k: keywords.value(header, k, path) for k in ("INSTRUME", "SUBARRAY", "SUBSTRT1",
                                                             "SUBSTRT2", "SUBSIZE1", "SUBSIZE2")}
        fam = family(meta["INSTRUME"])
        ny, nx = int(shape[-2]), int(shape[-1])
        noutputs = keywords.optional(header, "NOUTPUTS", 1 if meta["SUBARRAY"].upper() != "FULL" else 4)
        if fam == "MIRI":
            noutputs = MIRI_NOUTPUTS
        fast = keywords.optional(header, "FASTAXIS", 1)
        slow = keywords.optional(header, "SLOWAXIS", 2)
        if sorted((abs(fast), abs(slow))) != [1, 2]:
            raise InputError(path, f"FASTAXIS={fast}, SLOWAXIS={slow} do not describe two different axes")
        if meta["SUBARRAY"].upper() == "FULL":
            full = (ny, nx)
        else:
            ff = FULL_FRAME[fam]
            full = ff if abs(fast) == 1 else ff[::-1]
            if fam == "MIRI":
                full = ff
        start = (meta["SUBSTRT2"] - 1, meta["SUBSTRT1"] - 1)
        if (start[0] < 0 or start[1] < 0 or start[0] + ny > full[0] or start[1] + nx > full[1]):
            raise InputError(path, f"subarray SUBSTRT1/2={start[1] + 1}/{start[0] + 1} with shape "
                                   f"{ny}x{nx} does not fit a {full[0]}x{full[1]} full frame")
        return cls(fam, (ny, nx), tuple(full), start, int(noutputs), int(fast), int(slow))

    @property
    def is_full_frame(self):
        """True when the array is the whole detector (shape == full_shape)."""
        return self.shape == self.full_shape

    def cut(self, full_array):
        """View of this array's pixels in a full-frame array (..., ny_full, nx_full), science frame."""
        y0, x0 = self.start
        return full_array[..., y0:y0 + self.shape[0], x0:x0 + self.shape[1]]

    def full_frame_reference_mask(self):
        """bool (ny_full, nx_full), science frame: True on reference pixels."""
        mask = np.zeros(self.full_shape, bool)
        if self.family == "MIRI":
            mask[:, :MIRI_REF_COLUMNS] = True
            mask[:, -MIRI_REF_COLUMNS:] = True
        else:  # the 4-pixel border is symmetric, so the frame does not matter
            mask[:NREF, :] = mask[-NREF:, :] = True
            mask[:, :NREF] = mask[:, -NREF:] = True
        return mask

    def reference_mask(self):
        """bool (ny, nx): True where the array holds reference pixels."""
        return np.ascontiguousarray(self.cut(self.full_frame_reference_mask()))

    def full_frame_amplifier_map(self):
        """int8 (ny_full, nx_full), science frame: output index 0..noutputs-1 of every pixel."""
        if self.family == "MIRI":
            amp = np.broadcast_to(np.arange(self.full_shape[1]) % MIRI_NOUTPUTS, self.full_shape)
            return amp.astype(np.int8)
        det_shape = self.full_shape if abs(self.fastaxis) == 1 else self.full_shape[::-1]
        if self.noutputs == 1:
            return np.zeros(self.full_shape, np.int8)
        width = det_shape[1] // self.noutputs
        det = np.broadcast_to((np.arange(det_shape[1]) // width).clip(max=self.noutputs - 1),
                              det_shape).astype(np.int8)
        return np.ascontiguousarray(to_science(det, self.fastaxis, self.slowaxis))

    def amplifier_map(self):
        """int8 (ny, nx): output index of every pixel of the array (0 for 1-output subarrays)."""
        return np.ascontiguousarray(self.cut(self.full_frame_amplifier_map()))

    def to_detector(self, a):
        """View of ``a`` (..., ny, nx) in the detector frame (:func:`to_detector`)."""
        return to_detector(a, self.fastaxis, self.slowaxis)

    def to_science(self, a):
        """View of a detector-frame ``a`` in the science frame (:func:`to_science`)."""
        return to_science(a, self.fastaxis, self.slowaxis)
