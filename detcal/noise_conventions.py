"""Conventions of 1/f ("pink") noise amplitudes: one definition for the analyses and the simulator.

A 1/f noise source is a time stream of one readout output, sampled every pixel time ``dt``
(10 us for NIRCam/NIRISS), with the **one-sided** power spectral density

    S(f) = A / f        [DN^2/Hz or e-^2/Hz],  A in [DN^2] or [e-^2]

between a low-frequency end far below the data and the Nyquist frequency ``1/(2 dt)``. ``A``
is what :mod:`detcal.analysis.noise` fits to the CDS power spectra. It is reported in three
equivalent forms, all independent of the exposure that measured it:

* ``A`` itself [DN^2, e-^2];
* the **PSD level at** :data:`REF_FREQUENCY_HZ` (1 Hz): ``S(1 Hz) = A / (1 Hz)``
  [DN^2/Hz, e-^2/Hz] (:func:`pink_psd`);
* the **rms over the band** from ``1/T_ref`` to Nyquist, ``T_ref`` = :data:`REF_TIME_S`
  (10.73677 s, one NIRCam full-frame time): ``rms = sqrt(A ln(T_ref / (2 dt)))`` [DN, e-]
  (:func:`pink_rms`; 0.0931 Hz .. 50 kHz for dt = 10 us, ln = 13.19). This is the
  parameterisation of NGHXRG/pynrc's ``c_pink``/``u_pink`` and of the simulator's
  ``c_pink``/``u_pink`` (correlated: one stream common to all outputs; uncorrelated: one
  stream per output). Any other band: :func:`band_rms`.

The white noise level of a CDS frame is a CDS noise (standard deviation of a difference of two
groups); in the one-sided PSD of a readout stream it is ``2 dt W`` for a CDS variance ``W``.

The analyses own these conventions; the simulator imports them (never the reverse).
"""

import numpy as np

from .multiaccum import PIXEL_TIME_S

#: Frequency [Hz] at which the 1/f PSD level is reported.
REF_FREQUENCY_HZ = 1.0
#: Low end 1/T_ref of the band of the 1/f rms: T_ref [s] = one NIRCam full-frame time.
REF_TIME_S = 10.73677


def rms_band(pixel_time=PIXEL_TIME_S, ref_time=REF_TIME_S):
    """(f_lo, f_hi) [Hz] of the band of :func:`pink_rms`: ``1/ref_time`` to Nyquist ``1/(2 dt)``."""
    return 1.0 / float(ref_time), 0.5 / float(pixel_time)


def band_rms(a, f_lo, f_hi):
    """rms [sqrt(unit of A)] of a 1/f stream ``S(f) = A/f`` over ``[f_lo, f_hi]`` [Hz].

    ``sign(A) sqrt(|A| ln(f_hi/f_lo))`` (a fitted A can be negative; the sign is kept).
    """
    a = np.asarray(a, np.float64)
    return np.sign(a) * np.sqrt(np.abs(a) * np.log(float(f_hi) / float(f_lo)))


def pink_amplitude(rms, pixel_time=PIXEL_TIME_S, ref_time=REF_TIME_S):
    """PSD amplitude ``A`` [unit^2] of ``S(f) = A/f`` whose rms over ``[1/ref_time, Nyquist]`` is ``rms`` [unit]."""
    return float(rms) ** 2 / np.log(ref_time / (2.0 * pixel_time))


def pink_rms(a, pixel_time=PIXEL_TIME_S, ref_time=REF_TIME_S):
    """Inverse of :func:`pink_amplitude`: rms [unit] over ``[1/ref_time, Nyquist]`` of ``A`` [unit^2].

    The sign of ``A`` is kept: ``sign(A) sqrt(|A| ln(ref_time / (2 dt)))``.
    """
    return band_rms(a, *rms_band(pixel_time, ref_time))


def pink_psd(a, frequency=REF_FREQUENCY_HZ):
    """PSD level ``A / f`` [unit^2/Hz] of ``S(f) = A/f`` at ``frequency`` [Hz] (default 1 Hz)."""
    return np.asarray(a, np.float64) / float(frequency)


#: Reference-pixel correction of the ramps the noise analyses read (noise decomposition,
#: effective noise), as NRC-09/pynrc prepare them: superbias subtracted, then the refpix step
#: with the top/bottom reference rows only. The side reference columns are left out because
#: their row-by-row correction removes part of the 1/f noise being measured (and adds the
#: side pixels' own noise): pynrc ``reffix_hxrg(fixcol=False)``. Parameters of
#: :func:`detcal.steps.refpix.run`, applied over the workflow's own refpix parameters.
REFPIX_PARAMETERS = {"use_side_ref_pixels": False}
