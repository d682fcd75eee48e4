"""File-level wrappers around the steps: what a workflow script calls.

Kept here (not in the scripts) so it is tested without Snakemake. :func:`logged` routes
``logging`` to a job's log file and turns an :class:`InputError` into one clear message and a
non-zero exit.
"""

import contextlib
import logging
import sys
import time

from . import io, pipeline, plots, steps
from .errors import InputError


@contextlib.contextmanager
def logged(logfile, name):
    """Log to ``logfile`` (and stderr); on InputError print one line and exit 1."""
    handlers = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    log = logging.getLogger(f"detcal.{name}")
    start = time.perf_counter()
    try:
        yield log
    except InputError as err:
        log.error("%s", err)
        logging.shutdown()
        sys.exit(f"error: {err}")
    log.info("done in %.1f s", time.perf_counter() - start)


def run_step_file(step, ramp_path, reference_paths, output_path, params=None, pixels=(),
                  table=None, figure=None, exposure="", extra_output=None, skip_groups=(0, 0)):
    """Apply ``step`` to one ramp file and write its product.

    reference_paths : dict config-key -> path (e.g. ``{'superbias': '.../superbias.fits'}``)
    params : step parameters (keyword arguments of the step module's ``run``)
    pixels, table, figure : sample pixels (row, column) whose ramps before/after the step are
        written to ``table`` (TSV) and drawn in ``figure`` (PNG), when those are given
    extra_output : path for a step's second product (dark_current's ``dark_output``: the dark
        actually subtracted), written when the step returns one
    skip_groups : (first, last) groups flagged DO_NOT_USE before the step (the no-dark branch's
        MIRI convention, see :data:`detcal.pipeline.NODARK_SKIP_GROUPS`)
    """
    params = dict(params or {})
    module = steps.REGISTRY[step]
    log = logging.getLogger(f"detcal.{step}")
    ramp = io.read_ramp(ramp_path, step)
    log.info("%s: %s, shape %s, params %s", step, ramp_path, ramp.shape, params)
    refs = {key: io.read_reference(path, io.REFTYPES[key], like=ramp, lazy=read_lazily(step, key))
            for key, path in reference_paths.items()}
    if any(skip_groups):
        log.info("flagging the first %d and last %d groups DO_NOT_USE", *skip_groups)
        pipeline.flag_skipped_groups(ramp.groupdq, *skip_groups)
    pixels = plots.valid_pixels(pixels, ramp.shape)
    before = plots.sample_ramps(ramp.data, pixels)
    result = module.run(ramp, refs, **params)
    ramp, extra = result if isinstance(result, tuple) else (result, None)
    if extra is not None and extra_output:
        _write_extra(extra, ramp, extra_output, step, [ramp_path, *reference_paths.values()])
    io.write_ramp(ramp, output_path, step=step, inputs=[ramp_path, *reference_paths.values()],
                  params=dict(params, **({"skip_groups": tuple(skip_groups)} if any(skip_groups) else {})))
    if table or figure:
        samples = plots.step_table(step, before, plots.sample_ramps(ramp.data, pixels),
                                   plots.sample_ramps(ramp.groupdq, pixels), pixels)
        if table:
            with io.atomic_path(table) as tmp:
                samples.to_csv(tmp, sep="\t", index=False)
        if figure:
            plots.plot_step(samples, step, exposure, figure)
    return ramp


def read_lazily(step, key):
    """True when ``step`` reads its reference ``key`` by sections (the module's
    ``LAZY_REFERENCES``: :func:`detcal.io.read_reference` with ``lazy=True``)."""
    return key in getattr(steps.REGISTRY[step], "LAZY_REFERENCES", ())


def _write_extra(ref, ramp, path, step, inputs):
    """Write a Reference a step returned, labelled with the science subarray it was cut to."""
    header = ref.header.copy()
    for key in ("SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"):
        header[key] = ramp.header[key]
    arrays = {"SCI": ref.data, **({"DQ": ref.dq} if ref.dq is not None else {}),
              **({"ERR": ref.err} if ref.err is not None else {}), **ref.extras}
    io.write_reference(path, ref.reftype, arrays, header, step=f"{step} (subtracted {ref.reftype})",
                       inputs=inputs)


def run_ramp_fit_file(ramp_path, reference_paths, rate_path, rateints_path, params=None):
    """Fit the ramps of one file and write its ``rate`` and ``rateints`` products."""
    params = dict(params or {})
    log = logging.getLogger("detcal.ramp_fit")
    ramp = io.read_ramp(ramp_path, "ramp_fit")
    log.info("ramp_fit: %s, shape %s, params %s", ramp_path, ramp.shape, params)
    refs = {key: io.read_reference(path, io.REFTYPES[key], like=ramp)
            for key, path in reference_paths.items()}
    rate, rateints = steps.REGISTRY["ramp_fit"].run(ramp, refs, **params)
    inputs = [ramp_path, *reference_paths.values()]
    io.write_rate(rate_path, rate, ramp.header, step="ramp_fit", inputs=inputs, params=params)
    io.write_rate(rateints_path, rateints, ramp.header, tables=ramp.tables, step="ramp_fit",
                  inputs=inputs, params=params)
    return rate, rateints
