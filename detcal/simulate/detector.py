"""What every simulated detector kind shares: :class:`DetectorBase`.

:class:`detcal.simulate.h2rg.Detector` (NIR H2RG) and :class:`detcal.simulate.miri.Detector`
(MIRI Si:As) are dataclasses of their own truth arrays; both derive from :class:`DetectorBase`,
which holds no fields, only the properties and methods whose logic is the same for every kind
(identity keywords, geometry, derived truth, reference-file DQ arrays). Each kind defines
``shape``, ``noutputs``, ``active_box``, ``dark_readpatt``, ``coeffs`` and the orientation methods
``science`` / ``to_detector`` / ``science_coords``.
"""

import numpy as np
from astropy.io import fits

from .. import dqflags
from ..geometry import Geometry

#: Largest value of the 16-bit ADC [DN].
ADC_MAX = 65535.0


class DetectorBase:
    """Mixin of the simulated detectors (see the module docstring).

    Needs the attributes ``spec``, ``seed``, ``bias``, ``dark_rate``, ``rn_frame``, ``well``,
    ``reference``, ``hot``, ``warm``, ``dead`` and the kind's ``shape`` / ``noutputs``.
    """

    #: (ny, nx) of the real full array, written as a plain SUBARRAY='FULL'; any other shape is a
    #: mini detector (None: every shape is).
    FULL_SHAPE = None

    # --- identity and readout -------------------------------------------------------------
    @property
    def name(self):
        """DETECTOR name of the spec."""
        return self.spec["name"]

    @property
    def params(self):
        """The detector's resolved parameters."""
        return self.spec["params"]

    @property
    def instrument(self):
        """INSTRUME of the detector."""
        return self.params["instrument"]

    @property
    def gain(self):
        """Gain [e-/DN]."""
        return float(self.params["gain"])

    @property
    def tframe(self):
        """Frame time [s]."""
        return self.spec["tframe"]

    @property
    def fastaxis(self):
        """FASTAXIS (jwst convention, +-1 or +-2)."""
        return self.spec["fastaxis"]

    @property
    def slowaxis(self):
        """SLOWAXIS (jwst convention, +-1 or +-2)."""
        return self.spec["slowaxis"]

    @property
    def response(self):
        """bool: pixels that collect charge (active and not dead)."""
        return ~self.reference & ~self.dead

    def base_header(self):
        """Detector and subarray keywords shared by every file of this detector."""
        ny, nx = self.shape
        full = (ny, nx) == self.FULL_SHAPE
        h = fits.Header()
        h["TELESCOP"] = "JWST"
        h["INSTRUME"] = (self.instrument, "Instrument used to acquire the data")
        h["DETECTOR"] = (self.name, "Name of detector used to acquire the data")
        h["SUBARRAY"] = ("FULL", "Subarray used" + ("" if full else " (mini detector: own full frame)"))
        h["SUBSTRT1"] = (1, "Starting pixel in axis 1 direction")
        h["SUBSTRT2"] = (1, "Starting pixel in axis 2 direction")
        h["SUBSIZE1"] = (nx, "Number of pixels in axis 1 direction")
        h["SUBSIZE2"] = (ny, "Number of pixels in axis 2 direction")
        h["FASTAXIS"] = (self.fastaxis, "Fast readout axis direction")
        h["SLOWAXIS"] = (self.slowaxis, "Slow readout axis direction")
        h["NOUTPUTS"] = (self.noutputs, "Number of detector outputs used")
        return h

    @property
    def geometry(self):
        """:class:`detcal.geometry.Geometry` of the full array."""
        return Geometry.from_header(self.base_header(), self.shape, f"<simulated {self.name}>")

    # --- derived truth ----------------------------------------------------------------------
    @property
    def saturation(self):
        """float32 [DN raw, incl. bias]: SATURATION threshold, ``bias + sat_margin*well`` <= 65535."""
        thr = self.bias.astype(np.float64) + self.params["sat_margin"] * self.well
        return np.minimum(thr, ADC_MAX).astype(np.float32)

    @property
    def readnoise_cds_dn(self):
        """float32 [DN]: white CDS read noise per pixel, sqrt(2) * rn_frame / gain."""
        return (np.sqrt(2.0) * self.rn_frame / self.gain).astype(np.float32)

    def dark_signal(self, ngroups):
        """float32 (ngroups, ny, nx) [DN]: mean dark signal of group g (NFRAMES=1, GROUPGAP=0),
        rate*(g+1)*TFRAME/gain."""
        t = (np.arange(ngroups, dtype=np.float64) + 1.0) * self.tframe
        return (t[:, None, None] * (self.dark_rate / self.gain)[None]).astype(np.float32)

    # --- reference-file DQ arrays (detector frame) -------------------------------------------
    def mask_dq(self):
        """uint32 (ny, nx) MASK DQ: REFERENCE_PIXEL on reference pixels (never DO_NOT_USE there),
        HOT / WARM from the truth populations, DEAD|DO_NOT_USE on dead pixels."""
        mask = np.zeros(self.shape, np.uint32)
        mask[self.reference] |= np.uint32(dqflags.REFERENCE_PIXEL)
        mask[self.hot] |= np.uint32(dqflags.HOT)
        mask[self.warm] |= np.uint32(dqflags.WARM)
        mask[self.dead] |= np.uint32(dqflags.DEAD | dqflags.DO_NOT_USE)
        return mask

    def linearity_dq(self):
        """uint32 (ny, nx) LINEARITY DQ: NO_LIN_CORR on reference pixels."""
        return np.where(self.reference, np.uint32(dqflags.NO_LIN_CORR), np.uint32(0)).astype(np.uint32)
