"""File-level wrappers around the steps: what a workflow script calls.

Kept here (not in the scripts) so it is tested without Snakemake. :func:`run_step_file` is one
step of the per-step mode (one job per step, file in, file out; jump reads its SCI by chunks of
rows and copies it to its product, :func:`run_ramp_fit_file` reads by rows and writes the rates
by rows); :func:`run_chain_file` the fused mode (one job per exposure: the whole chain in memory,
writing the same files, bit for bit).
:func:`logged` routes ``logging`` to a job's log file and turns an :class:`InputError` into one
clear message and a non-zero exit.
"""

import contextlib
import logging
import sys
import time

import numpy as np
from astropy.io import fits

from . import io, keywords, pipeline, plots, steps, tables
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
    """Read the ramp and the references, then :func:`_run_step` (the fused chain's step too)."""
    desc = steps.descriptor.get(step)
    product_paths = dict(product_paths or {})
    if extra_output and desc.products:
        product_paths.setdefault(next(iter(desc.products)), extra_output)
    # a step that reads SCI only by rows and leaves it as it is (jump) gets it from the file
    ramp = io.read_ramp(ramp_path, step, lazy_data=getattr(steps.REGISTRY[step], "LAZY_DATA", False))
    logging.getLogger(f"detcal.{step}").info("%s: %s", step, ramp_path)
    refs = {key: io.read_reference(path, io.REFTYPES[key], like=ramp, lazy=read_lazily(step, key))
            for key, path in reference_paths.items()}
    return _run_step(step, ramp, refs, dict(params or {}), [ramp_path, *reference_paths.values()],
                     skip_groups=tuple(skip_groups), output=output_path, product_paths=product_paths,
                     pixels=pixels, exposure=exposure, table=table, figure=figure)


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
    """Fit the ramps of one file and write its ``rate`` and ``rateints`` products.

    The ramp is read by blocks of rows (:class:`detcal.io.RampReader`; GAIN and READNOISE rows
    through :class:`detcal.io.ReferenceReader`) and each block's rate and rateints rows are
    written as they are computed (:func:`_fit_rows_and_write`), so the job holds neither the ramp
    nor the products whole; the files are those of the whole-frame fit, byte for byte.

    Returns (rate, rateints): dicts ('sci', 'err', 'dq', 'var_poisson', 'var_rnoise') of
    :class:`detcal.io.LazyArray` over the written files (values read when used: a rate is (ny, nx),
    a rateints (nints, ny, nx)); None for a product without a path.
    """
    step = "ramp_fit"
    params = dict(params or {})
    logging.getLogger(f"detcal.{step}").info("%s: %s", step, ramp_path)
    with contextlib.ExitStack() as stack:
        ramp = stack.enter_context(io.RampReader(ramp_path, step))
        refs = {key: stack.enter_context(io.ReferenceReader(path, io.REFTYPES[key], like=ramp))
                for key, path in reference_paths.items()}
        _fit_rows_and_write(step, ramp, refs, params, [ramp_path, *reference_paths.values()],
                            {"rate": rate_path, "rateints": rateints_path})
    return tuple(None if path is None else _lazy_rate(path, three_d) for path, three_d
                 in ((rate_path, False), (rateints_path, True)))


def _lazy_rate(path, three_d):
    """{products key: LazyArray} of a written rate (2-D) or rateints (3-D) file."""
    reader = io.CubeReader(path, [ext for _, ext, _, _ in io.RATE_EXTENSIONS], rateints=three_d)
    return {key: reader.lazy(ext) if three_d else reader.lazy(ext)[0] for key, ext, _, _ in io.RATE_EXTENSIONS}


def _fit_rows_and_write(step, ramp, refs, params, inputs, product_paths):
    """ramp_fit by blocks of rows (its module's ``run_rows``) on a ramp in memory (fused chain) or
    a :class:`detcal.io.RampReader` (per-step job), writing the rate and rateints products asked
    for in ``product_paths`` row block by row block (:class:`detcal.io.RateWriter`: the bytes of
    :func:`detcal.io.write_rate`); logs the slopes from the written rate."""
    desc = steps.descriptor.get(step)
    nints, _, ny, nx = ramp.shape
    paths = {desc.products[name].kind: path for name, path in (product_paths or {}).items() if path}
    tables = ramp.tables if hasattr(ramp, "tables") else ramp.table_hdus(("INT_TIMES",))
    with contextlib.ExitStack() as stack:
        writers = {}
        if "rate" in paths:
            writers["rate"] = stack.enter_context(io.RateWriter(paths["rate"], (ny, nx), ramp.header, (), step,
                                                                inputs, params))
        if "rateints" in paths:
            writers["rateints"] = stack.enter_context(io.RateWriter(
                paths["rateints"], (nints, ny, nx), ramp.header, tables, step, inputs, params))

        def write(rows, rate, rateints):
            for kind, products in (("rate", rate), ("rateints", rateints)):
                if kind in writers:
                    writers[kind].write(rows, products)

        steps.REGISTRY[step].run_rows(ramp, refs, write, **params)
    if "rate" in paths:
        with io.CubeReader(paths["rate"], ("SCI",)) as rate:
            steps.REGISTRY[step].log_slopes(rate.read("SCI", 0))


# --------------------------------------------------------------------------------------------
# Fused mode: the whole chain of one exposure in memory (workflow/rules/fused.smk)
# --------------------------------------------------------------------------------------------
def run_chain_file(raw_path, family, enabled, references, outputs, names=None, params=None,
                   pixels=(), exposure="", skip_groups=(0, 0), noise_parameters=None):
    """Run the detector1 chain of one raw file in memory; write only the products asked for.

    The same products, bit for bit, as the per-step rules (:func:`run_step_file` once per step,
    each job reading the previous step's file; :func:`run_ramp_fit_file`): between two steps the
    ramp is made what the next job would read back (float32 SCI, uint32 PIXELDQ, uint8 GROUPDQ,
    float32 ZEROFRAME, the written primary header with S_* and HISTORY; :func:`_as_reread`), so
    every written file, HISTORY included, is the one the per-step mode writes.

    raw_path : the level-1b raw file (read once)
    family, enabled : instrument family and step switches; the chain is
        ``pipeline.chain(family, enabled)``
    references : {step: {config key: path}} of every step that runs (the per-step rules'
        reference inputs, in their order: HISTORY lists them in that order)
    outputs : {product: path} of the files to write (a product not named is not written):
        ``<step>`` a ramp step's product; ``table_<step>``, ``figure_<step>`` its sample-pixel
        ramps before/after (TSV, PNG); ``dark`` dark_current's ``dark_output``; ``rate``,
        ``rateints`` the main chain's slopes; ``nodark_<step>`` (the re-run steps, e.g. MIRI
        refpix, and jump), ``nodark_rate``, ``nodark_rateints`` the branch without dark
        subtraction (:func:`detcal.pipeline.nodark_steps`; it runs when any ``nodark_*``
        product is asked for); ``noise`` the noise analyses' refpix product
        (:data:`detcal.noise_conventions.REFPIX_PARAMETERS` folded into ``noise_parameters``).
    names : {product: path} of every ramp product the per-step mode makes, written or not (the
        input names in HISTORY); ``outputs`` are added to it
    params : {step: parameters} (keyword arguments of the step's ``run``)
    pixels, exposure : sample pixels (row, column) of the step tables/figures, figure title
    skip_groups : (first, last) groups the branch without dark flags DO_NOT_USE before its jump
        (:func:`detcal.pipeline.nodark_skip_groups`)
    noise_parameters : refpix parameters of the ``noise`` product

    Memory: one ramp (float32 SCI, GROUPDQ, PIXELDQ) plus what the running step needs (ramp_fit
    writes the rate and rateints by blocks of rows as it fits them: never whole). The
    branch without dark starts from the product before dark_current; where it only runs jump
    and ramp_fit (NIR) it shares the main ramp's SCI read-only (those steps write only DQ), with
    its own DQ arrays; where it re-runs a step that changes SCI (MIRI refpix) it works on a copy,
    freed before the main chain goes on. Time and resident memory are logged after each step.
    """
    log = logging.getLogger("detcal.chain")
    params = {step: dict(p or {}) for step, p in (params or {}).items()}
    names = {**(names or {}), **outputs}
    chain = pipeline.chain(family, enabled)
    plan = _chain_plan(family, enabled, outputs)
    refs = _ReferenceCache(references, plan)
    start = time.perf_counter()
    ramp = io.read_ramp(raw_path, chain[0] if chain else "inventory")
    log.info("chain of %s: shape %s, tasks %s", raw_path, ramp.shape,
             ", ".join(step if branch == "main" else f"{branch} {step}" for branch, step in plan))
    _log_usage(log, "read", time.perf_counter() - start)
    ramps = {"main": ramp}
    current = {"main": raw_path}
    for i, (branch, step) in enumerate(plan):
        start = time.perf_counter()
        main = branch == "main"
        prefix = "" if main else f"{branch}_"
        key = "noise" if branch == "noise" else prefix + step
        if branch not in ramps:   # a branch starts from the main ramp as it is now
            ramps[branch] = _branch_copy(ramps["main"], share_data=(
                branch == "nodark" and not pipeline.nodark_steps(family, enabled)))
            current[branch] = current["main"]
        desc = steps.descriptor.get(step)
        ramp = ramps.pop(branch)
        result = _run_step(
            step, ramp, refs.get(step, ramp, i),
            dict(noise_parameters or {}) if branch == "noise" else params.get(step, {}),
            [current[branch], *references.get(step, {}).values()],
            skip_groups=tuple(skip_groups) if (branch == "nodark" and step == "jump") else (0, 0),
            output=outputs.get(key),
            product_paths={name: outputs.get(prefix + name) for name in desc.products},
            pixels=pixels if main else (), exposure=exposure,
            table=outputs.get(f"table_{step}") if main else None,
            figure=outputs.get(f"figure_{step}") if main else None)
        if desc.ramp_product and any(b == branch for b, _ in plan[i + 1:]):
            ramps[branch] = result.ramp            # the branch goes on; otherwise it is freed
            current[branch] = names.get(key, current[branch])
        del ramp, result
        refs.release(i)
        _log_usage(log, f"{branch} {step}", time.perf_counter() - start)


def _chain_plan(family, enabled, outputs):
    """Tasks (branch, step) in the order :func:`run_chain_file` runs them: the main chain, with
    the noise branch (refpix) right after the product before refpix and the branch without dark
    right after the product before dark_current, so that each branch's copy is short-lived."""
    chain = pipeline.chain(family, enabled)
    branches = {}
    if "noise" in outputs:
        branches.setdefault(pipeline.product_before(family, enabled, "refpix"), []).append(
            ("noise", "refpix"))
    if any(name.startswith("nodark_") for name in outputs):
        branches.setdefault(pipeline.product_before(family, enabled, "dark_current"), []).extend(
            ("nodark", step) for step in (*pipeline.nodark_steps(family, enabled), "jump", "ramp_fit"))
    plan = list(branches.get(None, []))
    for step in chain:
        plan.append(("main", step))
        plan += branches.get(step, [])
    return plan


class _ReferenceCache:
    """References of the chain's steps, each file read once (cut to the ramp's subarray) and
    dropped after its last use. A reference used by more than one task is made read-only, so a
    step that changed it in place would fail instead of handing the next step other values than
    a fresh read (as the per-step jobs get)."""

    def __init__(self, references, plan):
        self.references = references
        self.last_use, self.uses = {}, {}
        for i, (_, step) in enumerate(plan):
            for key, path in references.get(step, {}).items():
                self.last_use[(key, path)] = i
                self.uses[(key, path)] = self.uses.get((key, path), 0) + 1
        self.cache = {}

    def get(self, step, ramp, i):
        out = {}
        for key, path in self.references.get(step, {}).items():
            if (key, path) not in self.cache:
                ref = io.read_reference(path, io.REFTYPES[key], like=ramp, lazy=read_lazily(step, key))
                if self.uses[(key, path)] > 1:
                    for arr in (ref.data, ref.dq, ref.err, *ref.extras.values()):
                        if hasattr(arr, "flags"):
                            arr.flags.writeable = False
                self.cache[(key, path)] = ref
            out[key] = self.cache[(key, path)]
        return out

    def release(self, i):
        for name in [n for n in self.cache if self.last_use[n] <= i]:
            del self.cache[name]


def _branch_copy(ramp, share_data=False):
    """A ramp for a branch: its own DQ arrays, header and tables; SCI shared read-only
    (``share_data``: the branch's steps write only DQ) or copied."""
    if share_data:
        data = ramp.data.view()
        data.flags.writeable = False
    else:
        data = ramp.data.copy()
    return io.Ramp(data, ramp.pixeldq.copy(), ramp.groupdq.copy(), ramp.header.copy(), ramp.path,
                   [t.copy() for t in ramp.tables],
                   None if ramp.zeroframe is None else ramp.zeroframe.copy())


def _run_step(step, ramp, refs, params, inputs, skip_groups=(0, 0), output=None, product_paths=None,
              pixels=(), exposure="", table=None, figure=None):
    """One step on a ramp in memory (the per-step jobs through :func:`run_step_file`, the fused
    chain directly): apply it, write the products asked for (``output``: the ramp; the step's
    further products; the sample-pixel ``table``/``figure``), and return the
    :class:`~detcal.steps.StepResult` with its ramp as the next job would read it back."""
    desc = steps.descriptor.get(step)
    log = logging.getLogger(f"detcal.{step}")
    keywords.require(ramp.header, step, ramp.path)    # what reading the previous product checks
    log.info("%s: shape %s, params %s", step, ramp.shape, params)
    if any(skip_groups):
        log.info("flagging the first %d and last %d groups DO_NOT_USE", *skip_groups)
        pipeline.flag_skipped_groups(ramp.groupdq, *skip_groups)
    if hasattr(steps.REGISTRY[step], "run_rows"):     # ramp_fit: products written by rows
        _fit_rows_and_write(step, ramp, refs, params, inputs, product_paths)
        return steps.StepResult(ramp)
    pixels = plots.valid_pixels(pixels, ramp.shape)
    before = plots.sample_ramps(ramp.data, pixels)
    result = desc.apply(ramp, refs, **params)
    for name, product in result.products.items():
        if (product_paths or {}).get(name):
            _WRITERS[desc.products[name].kind](product, result.ramp, product_paths[name], step, inputs,
                                               params)
    if not desc.ramp_product:
        return result
    if table or figure:       # sampled before the float32 cast, as run_step_file does
        after = plots.sample_ramps(result.ramp.data, pixels)
    ramp = result.ramp = _as_reread(result.ramp, step, inputs, dict(
        params, **({"skip_groups": tuple(skip_groups)} if any(skip_groups) else {})))
    if output:
        io.write_ramp(ramp, output)   # header already recorded (S_*, HISTORY)
    if table or figure:
        samples = plots.step_table(step, before, after, plots.sample_ramps(ramp.groupdq, pixels), pixels)
        if table:   # a mapping of columns, written without pandas (a job's start-up)
            tables.write_tsv(samples, table)
        if figure:
            plots.plot_step(samples, step, exposure, figure)
    return result


def _as_reread(ramp, step, inputs, params):
    """``ramp`` as the next per-step job reads it back from the file :func:`detcal.io.write_ramp`
    writes for ``step``: arrays in the file's dtypes, and the primary header as written (S_*
    COMPLETE unless the step skipped itself, HISTORY, DCVERS, NEXTEND, FITS structure keywords)
    and parsed back from its card images."""
    header = ramp.header.copy()
    if step in keywords.CAL_STEP and header.get(keywords.CAL_STEP[step]) != "SKIPPED":
        header[keywords.CAL_STEP[step]] = "COMPLETE"
    io.add_history(header, step, inputs, params)
    primary = fits.PrimaryHDU(header=header)
    primary.header["NEXTEND"] = 3 + (ramp.zeroframe is not None) + len(ramp.tables)
    ramp.header = fits.Header.fromstring(primary.header.tostring())
    if not isinstance(ramp.data, io.LazyArray):     # a file's SCI stays there (written by copy)
        ramp.data = np.asarray(ramp.data, np.float32)
    ramp.pixeldq = np.asarray(ramp.pixeldq, np.uint32)
    ramp.groupdq = np.asarray(ramp.groupdq, np.uint8)
    if ramp.zeroframe is not None:
        ramp.zeroframe = np.asarray(ramp.zeroframe, np.float32)
    return ramp


def _log_usage(log, what, seconds):
    """Log a task's wall time and the process's resident memory now and at its peak [MB]."""
    status = {}
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
    mb = {k: int(v.split()[0]) / 1024 for k, v in status.items()}
    log.info("%s: %.2f s, resident %.0f MB, peak %.0f MB", what, seconds, mb.get("VmRSS", float("nan")),
             mb.get("VmHWM", float("nan")))
