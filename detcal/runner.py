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
                  table=None, figure=None, exposure="", extra_output=None, skip_groups=(0, 0),
                  product_paths=None):
    """Apply ``step`` to one ramp file and write its products; return its
    :class:`~detcal.steps.StepResult` ``.ramp`` (the ramp after the step).

    reference_paths : dict config-key -> path (e.g. ``{'superbias': '.../superbias.fits'}``)
    output_path : path of the step's ramp product (None for a step without one: ramp_fit)
    params : step parameters (keyword arguments of the step module's ``run``)
    pixels, table, figure : sample pixels (row, column) whose ramps before/after the step are
        written to ``table`` (TSV) and drawn in ``figure`` (PNG), when those are given
    product_paths : {product name: path} for the step's further products (its descriptor's
        ``products``: dark_current ``dark``, ramp_fit ``rate``/``rateints``); a product the step
        made without a path here is not written
    extra_output : path of the step's first declared product (dark_current's ``dark_output``:
        the dark actually subtracted); the same as ``product_paths={'dark': extra_output}``
    skip_groups : (first, last) groups flagged DO_NOT_USE before the step (the no-dark branch's
        MIRI convention, see :data:`detcal.pipeline.NODARK_SKIP_GROUPS`)
    """
    return _run_step_file(step, ramp_path, reference_paths, output_path, params, pixels, table, figure,
                          exposure, extra_output, skip_groups, product_paths).ramp


def _run_step_file(step, ramp_path, reference_paths, output_path, params, pixels, table, figure,
                   exposure, extra_output, skip_groups, product_paths):
    params = dict(params or {})
    desc = steps.descriptor.get(step)
    product_paths = dict(product_paths or {})
    if extra_output and desc.products:
        product_paths.setdefault(next(iter(desc.products)), extra_output)
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
    result = desc.apply(ramp, refs, **params)
    ramp, inputs = result.ramp, [ramp_path, *reference_paths.values()]
    for name, product in result.products.items():
        if product_paths.get(name):
            _WRITERS[desc.products[name].kind](product, ramp, product_paths[name], step, inputs, params)
    if not desc.ramp_product:
        return result
    io.write_ramp(ramp, output_path, step=step, inputs=inputs,
                  params=dict(params, **({"skip_groups": tuple(skip_groups)} if any(skip_groups) else {})))
    if table or figure:
        samples = plots.step_table(step, before, plots.sample_ramps(ramp.data, pixels),
                                   plots.sample_ramps(ramp.groupdq, pixels), pixels)
        if table:
            with io.atomic_path(table) as tmp:
                samples.to_csv(tmp, sep="\t", index=False)
        if figure:
            plots.plot_step(samples, step, exposure, figure)
    return result


def read_lazily(step, key):
    """True when ``step`` reads its reference ``key`` by sections (the module's
    ``LAZY_REFERENCES``: :func:`detcal.io.read_reference` with ``lazy=True``)."""
    return key in getattr(steps.REGISTRY[step], "LAZY_REFERENCES", ())


def _write_extra(ref, ramp, path, step, inputs, params=None):
    """Write a Reference a step returned, labelled with the science subarray it was cut to."""
    header = ref.header.copy()
    for key in ("SUBARRAY", "SUBSTRT1", "SUBSTRT2", "SUBSIZE1", "SUBSIZE2"):
        header[key] = ramp.header[key]
    arrays = {"SCI": ref.data, **({"DQ": ref.dq} if ref.dq is not None else {}),
              **({"ERR": ref.err} if ref.err is not None else {}), **ref.extras}
    io.write_reference(path, ref.reftype, arrays, header, step=f"{step} (subtracted {ref.reftype})",
                       inputs=inputs)


def _write_rate(rate, ramp, path, step, inputs, params):
    io.write_rate(path, rate, ramp.header, step=step, inputs=inputs, params=params)


def _write_rateints(rateints, ramp, path, step, inputs, params):
    io.write_rate(path, rateints, ramp.header, tables=ramp.tables, step=step, inputs=inputs, params=params)


#: How each kind of step product (detcal.steps.descriptor.Product.kind) is written.
_WRITERS = {"reference": _write_extra, "rate": _write_rate, "rateints": _write_rateints}


def run_ramp_fit_file(ramp_path, reference_paths, rate_path, rateints_path, params=None):
    """Fit the ramps of one file and write its ``rate`` and ``rateints`` products; return them."""
    result = _run_step_file("ramp_fit", ramp_path, reference_paths, None, params, (), None, None, "", None,
                            (0, 0), {"rate": rate_path, "rateints": rateints_path})
    return result.products["rate"], result.products["rateints"]
