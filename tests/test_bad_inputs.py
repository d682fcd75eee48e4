"""Bad and odd inputs are caught before any job runs: one line per problem naming the file.

The table :data:`CASES` damages one copy of a tiny simulated set (NRCA1, 32 x 32, 2 exposures,
4 groups, 3 exposures, the simulator's references given explicitly, as a user gives them) and checks what
``python -m detcal.validate`` (:func:`detcal.validate.main`, the checks the workflow runs when it
builds the DAG) says: exit code 1, one ``error:`` message whose every line names the damaged file
and one of them the problem, no traceback, nothing written and the good files byte-identical.
A few cases (:data:`WORKFLOW_CASES`) go through ``snakemake`` itself on a working directory that
already holds products, which must be untouched.
"""

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits

from detcal import simulate, validate

REPO = Path(__file__).resolve().parents[1]
SPEC = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 4, "nints": 1, "nexposures": 3}
E1, E2, E3 = (f"uncal/demo_nrca1_e00{i}_uncal.fits" for i in (1, 2, 3))
REF = "references/NRCA1/{}.fits"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    simulate.write_detector_set(SPEC, str(root), 5)
    return root


# ---- damage helpers (each takes the path of the file to damage) -----------------------------
def header(**cards):
    def damage(path):
        with fits.open(path, mode="update") as hdul:
            for key, val in cards.items():
                if val is None:
                    del hdul[0].header[key]
                else:
                    hdul[0].header[key] = val
    return damage


def ext_header(ext, **cards):
    def damage(path):
        with fits.open(path, mode="update") as hdul:
            for key, val in cards.items():
                hdul[ext].header[key] = val
    return damage


def rewrite(fn):
    """Replace the file by ``fn(hdul)`` applied to an in-memory copy."""
    def damage(path):
        with fits.open(path) as hdul:
            hdul = fits.HDUList([h.copy() for h in hdul])
        fn(hdul)
        if "NEXTEND" in hdul[0].header:
            hdul[0].header["NEXTEND"] = len(hdul) - 1
        hdul.writeto(path, overwrite=True)
    return damage


def set_data(ext, fn):
    def change(hdul):
        hdul[ext].data = fn(hdul[ext].data)
    return rewrite(change)


def keep_groups(n):
    def change(hdul):
        hdul["SCI"].data = hdul["SCI"].data[:, :n].copy()
        hdul[0].header["NGROUPS"] = n
    return rewrite(change)


def float_sci_with_nan(hdul):
    sci = hdul["SCI"].data.astype(np.float32)
    sci[0, 1, 3, 4] = np.nan
    hdul["SCI"].data = sci


def float_ext(name):
    def change(hdul):
        shape = hdul["SCI"].data.shape
        arr = np.zeros(shape if name == "GROUPDQ" else shape[2:], np.float32)
        if name in hdul:
            hdul[name].data = arr
        else:
            hdul.append(fits.ImageHDU(arr, name=name))
    return rewrite(change)


def drop_ext(name):
    def change(hdul):
        del hdul[name]
    return rewrite(change)


def truncate(path):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2 + 100])


def empty(path):
    Path(path).write_bytes(b"")


def text(path):
    Path(path).write_text("this is not a FITS file\n")


def rename_to(new):
    """Move the file to ``new`` (relative to the data root); the case's target is ``new``."""
    def damage(path):
        root = Path(path).parents[1]
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, root / new)
    return damage


def copy_to(new):
    def damage(path):
        root = Path(path).parents[1]
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / new)
    return damage


def rename_in_place(new_name):
    """Rename the file within its directory (the case names the new path)."""
    def damage(path):
        shutil.move(path, Path(path).with_name(new_name))
    return damage


def below_superbias(path):
    """SATURATION 1 DN below the SUPERBIAS of the same detector (positive, but no usable range)."""
    bias = fits.getdata(Path(path).with_name("superbias.fits"), "SCI")
    set_data("SCI", lambda a: (bias - 1.0).astype(a.dtype))(path)


def fill(value):
    return set_data("SCI", lambda a: np.full_like(a, value))


def with_mask_dq_float(hdul):
    hdul["DQ"].data = hdul["DQ"].data.astype(np.float32)


# ---- the table: id, file damaged, damage, regex of the problem --------------------------------
CASES = [
    # raw files: structure
    ("raw-truncated", E1, truncate, r"truncated|not a readable FITS"),
    ("raw-empty-file", E1, empty, r"not a readable FITS|empty"),
    ("raw-text-named-fits", E1, text, r"not a readable FITS"),
    ("raw-no-SCI", E1, drop_ext("SCI"), r"no SCI extension"),
    ("raw-SCI-3D", E1, set_data("SCI", lambda a: a[0].copy()), r"SCI has 3 dimensions"),
    ("raw-SCI-float-NaN", E1, rewrite(float_sci_with_nan), r"SCI has 1 NaN/inf values"),
    ("raw-GROUPDQ-float", E1, float_ext("GROUPDQ"), r"GROUPDQ is floating point"),
    ("raw-PIXELDQ-float", E1, float_ext("PIXELDQ"), r"PIXELDQ is floating point"),
    # raw files: keywords
    ("raw-no-NGROUPS", E1, header(NGROUPS=None), r"missing header keyword NGROUPS"),
    ("raw-no-NINTS", E1, header(NINTS=None), r"missing header keyword NINTS"),
    ("raw-no-DETECTOR", E1, header(DETECTOR=None), r"missing header keyword DETECTOR"),
    ("raw-no-INSTRUME", E1, header(INSTRUME=None), r"missing header keyword INSTRUME"),
    ("raw-no-READPATT", E1, header(READPATT=None), r"missing header keyword READPATT"),
    ("raw-no-SUBARRAY", E1, header(SUBARRAY=None), r"missing header keyword SUBARRAY"),
    ("raw-no-TGROUP", E1, header(TGROUP=None), r"missing header keyword TGROUP"),
    ("raw-no-TFRAME", E1, header(TFRAME=None), r"missing header keyword TFRAME"),
    ("raw-NGROUPS-text", E1, header(NGROUPS="four"), r"NGROUPS='four' is not a valid int"),
    ("raw-TFRAME-zero", E1, header(TFRAME=0.0), r"TFRAME=0.0 s: must be finite and > 0"),
    ("raw-TGROUP-negative", E1, header(TGROUP=-1.0), r"TGROUP=-1.0 s: must be finite and > 0"),
    ("raw-NGROUPS-1", E1, keep_groups(1), r"NGROUPS=1: the workflow needs at least 3"),
    ("raw-NGROUPS-2", E1, keep_groups(2), r"NGROUPS=2: the workflow needs at least 3"),
    ("raw-NGROUPS-vs-data", E1, header(NGROUPS=5), r"header NGROUPS=5 but SCI has 4 groups"),
    ("raw-INTEND-vs-data", E1, header(NINTS=3, INTSTART=1, INTEND=2),
     r"NINTS=3 \(INTSTART/INTEND 1/2\) but SCI has 1 integrations"),
    ("raw-SUBSIZE-vs-data", E1, header(SUBSIZE1=64), r"SUBSIZE1 x SUBSIZE2 = 64 x 32"),
    ("raw-NFRAMES-zero", E1, header(NFRAMES=0), r"NFRAMES=0 / GROUPGAP=0 are not valid"),
    ("raw-subarray-outside-frame", E1, header(SUBARRAY="SUB32", SUBSTRT1=2040, NOUTPUTS=1),
     r"does not fit a 2048x2048 full frame"),
    ("raw-NOUTPUTS-4-narrow-subarray", E1, header(SUBARRAY="SUB32", SUBSTRT1=101, SUBSTRT2=101),
     r"NOUTPUTS=4 with SUBARRAY=SUB32: a 4-output subarray must span the full fast-scan width"),
    ("raw-NOUTPUTS-3", E1, header(NOUTPUTS=3), r"NOUTPUTS=3: an H2RG is read through 1 or 4"),
    ("raw-FASTAXIS-impossible", E1, header(FASTAXIS=3), r"FASTAXIS=3, SLOWAXIS=2 do not describe"),
    ("raw-INSTRUME-unsupported", E1, header(INSTRUME="WFC3"), r"unsupported INSTRUME 'WFC3'"),
    ("raw-INSTRUME-vs-DETECTOR", E1, header(INSTRUME="NIRISS"), r"DETECTOR=NRCA1 belongs to NIRCAM"),
    ("raw-FASTAXIS-vs-group", E2, header(FASTAXIS=1),
     r"FASTAXIS=1 but the other files of configuration group .* have FASTAXIS=-1"),
    ("raw-TFRAME-vs-group", E2, header(TFRAME=10.73677, TGROUP=10.73677),
     r"TFRAME=10.73677 but the other files of configuration group"),
    ("raw-TGROUP-vs-TFRAME", E1, header(TGROUP=5.0), r"TGROUP=5.0 s is inconsistent with"),
    ("raw-IRS2", E1, header(READPATT="NRSIRS2RAPID"), r"IRS2 readout .* is not supported"),
    ("raw-non-ASCII-name", E1, rename_to("uncal/démo_nrca1_e001_uncal.fits"),
     r"file name has non-ASCII characters", "uncal/démo_nrca1_e001_uncal.fits"),
    ("raw-duplicate-exposure-name", E1, copy_to("more/demo_nrca1_e001_uncal.fits"),
     r"exposure name 'demo_nrca1_e001' is also used by .*more/demo_nrca1_e001_uncal.fits"),
    # references given in the config
    ("ref-missing-file", "references/NRCA1/nothere.fits", None,
     r"file does not exist \(given as --reference NRCA1:gain\)"),
    ("ref-wrong-type", REF.format("gain"), header(REFTYPE="READNOISE"),
     r"REFTYPE is 'READNOISE', but it was given as the GAIN reference"),
    ("ref-truncated", REF.format("gain"), truncate, r"truncated|not a readable FITS"),
    ("ref-text", REF.format("readnoise"), text, r"not a readable FITS"),
    ("ref-gain-zero", REF.format("gain"), fill(0.0), r"GAIN is non-finite or <= 0 on 1024 of the 1024"),
    ("ref-gain-negative", REF.format("gain"), fill(-2.0), r"GAIN is non-finite or <= 0 on 1024"),
    ("ref-gain-nan", REF.format("gain"), fill(np.nan), r"GAIN is non-finite or <= 0 on 1024"),
    ("ref-readnoise-nan", REF.format("readnoise"), fill(np.nan), r"READNOISE is non-finite or <= 0 on 1024"),
    ("ref-saturation-zero", REF.format("saturation"), fill(0.0),
     r"SATURATION is at or below the SUPERBIAS on 1024 of the 1024"),
    ("ref-saturation-below-superbias", REF.format("saturation"), below_superbias,
     r"SATURATION is at or below the SUPERBIAS on 1024 of the 1024"),
    ("ref-readnoise-zero", REF.format("readnoise"), fill(0.0), r"READNOISE is non-finite or <= 0 on 1024"),
    ("ref-non-ASCII-name", REF.format("superbias"), rename_in_place("süperbias.fits"),
     r"file name has non-ASCII characters", "references/NRCA1/süperbias.fits"),
    ("ref-dark-other-detector", REF.format("dark"), header(DETECTOR="NRCB1"),
     r"DETECTOR=NRCB1 but the raw files that use it have DETECTOR=NRCA1"),
    ("ref-instrume-other", REF.format("gain"), header(INSTRUME="MIRI"),
     r"INSTRUME=MIRI but the raw files that use it have INSTRUME=NIRCAM"),
    ("ref-dark-too-few-groups", REF.format("dark"),
     rewrite(lambda h: [h.__setitem__(i, type(h[i])(h[i].data[:2].copy(), header=h[i].header, name=h[i].name))
                        for i in range(1, len(h))
                        if h[i].name in ("SCI", "ERR", "DQ") and h[i].data is not None
                        and h[i].data.ndim == 3]),
     r"DARK has 2 groups .* NGROUPS=4 .* needs 4"),
    ("ref-superbias-too-small", REF.format("superbias"),
     rewrite(lambda h: [h.__setitem__(i, fits.ImageHDU(h[i].data[..., :16, :16].copy(), name=h[i].name))
                        for i in range(1, len(h)) if h[i].data is not None and h[i].is_image]),
     r"covers 16 x 16 pixels, which does not contain the 32 x 32 science array"),
    ("ref-superbias-3D", REF.format("superbias"), set_data("SCI", lambda a: a[None].copy()),
     r"SCI has 3 dimensions; a SUPERBIAS reference needs 2"),
    ("ref-mask-DQ-float", REF.format("mask"), rewrite(with_mask_dq_float), r"DQ is floating point"),
    ("ref-gain-no-SCI", REF.format("gain"), drop_ext("SCI"), r"GAIN reference has no SCI extension"),
]

REF_KEYS = ("mask", "saturation", "superbias", "linearity", "dark", "gain", "readnoise")


def _tree(root):
    """{relative path: sha256} of every file under ``root``."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(case, base, root):
    """Copy the good set ``base`` to ``root``, damage it as ``case`` says and run
    ``python -m detcal.validate`` (:func:`detcal.validate.main`) on it with every reference.

    Returns (exit code, stdout, stderr, path the message must name, tree before, tree after).
    """
    import contextlib
    import io as _io

    name, target, damage, pattern, *named = case      # named: the file the message names, if moved
    shutil.copytree(base, root)
    refs = {k: root / REF.format(k) for k in REF_KEYS}
    if damage is None:
        refs["gain"] = root / target
    else:
        damage(str(root / target))
    bad = root / (named[0] if named else target)
    refs = {k: (bad if p == root / target else p) for k, p in refs.items()}     # a moved reference
    before = _tree(root)
    argv = [str(root / "uncal" / "*_uncal.fits"), str(root / "more" / "*_uncal.fits")] + [
        f"--reference=NRCA1:{k}={p}" for k, p in refs.items()]
    if not (root / "more").exists():
        argv.pop(1)
    out, err = _io.StringIO(), _io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = validate.main(argv)
    return rc, out.getvalue(), err.getvalue(), str(bad), before, _tree(root)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_error(case, base, tmp_path):
    rc, out, err, bad, before, after = run_case(case, base, tmp_path / "data")
    assert rc == 1
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: ")
    assert all(bad in line for line in lines), lines        # every line names the damaged file
    assert any(__import__("re").search(case[3], line) for line in lines), lines
    assert after == before                                  # nothing written, nothing changed


def test_all_problems_listed_at_once(base, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(base, root)
    header(TFRAME=0.0)(str(root / E1))
    keep_groups(2)(str(root / E2))
    fill(np.nan)(str(root / REF.format("readnoise")))
    with pytest.raises(validate.InputErrors) as exc:
        validate.inventory([str(root / E1), str(root / E2), str(root / E3)],
                           [(str(root / REF.format("readnoise")), "readnoise", "NRCA1", "x")])
    problems = exc.value.problems
    assert [os.path.basename(p) for p, _ in problems] == [
        "demo_nrca1_e001_uncal.fits", "demo_nrca1_e002_uncal.fits", "readnoise.fits"]
    assert len(str(exc.value).splitlines()) == 3


def test_good_set_passes(base, capsys):
    argv = [str(base / E1), str(base / E2), str(base / E3)] + [f"--reference=NRCA1:{k}={base / REF.format(k)}"
                                                for k in REF_KEYS]
    assert validate.main(argv) == 0
    assert "no problems" in capsys.readouterr().out


def test_config_problems_name_file_key_and_value(tmp_path):
    user = tmp_path / "my.yaml"
    user.write_text("raw: data/*.fits\nkep: [jump]\nsteps: {jump: 3}\nreffiles: {hot_threshold: x}\n")
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg.update(yaml.safe_load(user.read_text()))
    cfg["reffiles"] = {"hot_threshold": "x"}
    lines = validate.config_problems(cfg, REPO / "workflow/schemas/config.schema.yaml",
                                     [REPO / "config/config.yaml", user])
    assert len(lines) == 3, lines
    assert lines[0].startswith(f"{user}: unknown config key kep (value ['jump'])")
    assert any(f"{user}: config key reffiles:hot_threshold = 'x'" in line for line in lines)
    assert any(f"{user}: config key steps:jump = 3: 3 is not of type 'boolean'" in line for line in lines)


# ---- through snakemake ------------------------------------------------------------------------
WORKFLOW_CASES = [
    # id, config written to the user's file (RAW/REFS filled in), damage (file, fn), regex
    ("wf-unknown-key", {"kep": ["jump"]}, None, r"my.yaml: unknown config key kep"),
    ("wf-raw-empty-list", {"raw": []}, None, r"my.yaml: config key raw = \[\] is empty"),
    ("wf-glob-matches-nothing", {"raw": "nowhere/*_uncal.fits"}, None,
     r"nowhere/\*_uncal.fits: matches no file \(config key 'raw'\)"),
    ("wf-bad-raw-and-bad-reference", {}, [(E1, header(TFRAME=0.0)), (REF.format("gain"), fill(np.nan))],
     r"demo_nrca1_e001_uncal.fits: TFRAME=0.0 s: must be finite and > 0"),
    ("wf-missing-reference", {"references": {"NRCA1": {"dark": "nothere/dark.fits"}}}, None,
     r"nothere/dark.fits: file does not exist \(config references: NRCA1: dark\)"),
]


@pytest.mark.workflow
@pytest.mark.parametrize("case", WORKFLOW_CASES, ids=[c[0] for c in WORKFLOW_CASES])
def test_workflow_stops_before_any_job(case, base, tmp_path):
    rc, text, before, after = run_workflow_case(case, base, tmp_path)
    assert rc != 0
    assert "Traceback (most recent call last)" not in text
    assert __import__("re").search(case[3], text), text[-2000:]
    assert len([line for line in text.splitlines() if line.startswith("error:")]) == 1
    assert after == before                                    # nothing written, products untouched


def run_workflow_case(case, base, tmp):
    """Run ``snakemake`` on a working directory with products of an earlier run and the user's
    config of ``case``; returns (exit code, stdout + stderr, tree before, tree after)."""
    wid, cfg, damages, pattern = case
    root = tmp / "data"
    shutil.copytree(base, root)
    for target, damage in damages or ():
        damage(str(root / target))
    work = tmp / "work"
    shutil.copytree(REPO / "config", work / "config")
    products = work / "results" / "rates"
    products.mkdir(parents=True)
    (products / "earlier_rate.fits").write_bytes(b"products of an earlier run")
    refs = {k: str(root / REF.format(k)) for k in REF_KEYS}
    config = {"raw": str(root / "uncal" / "*_uncal.fits"), "references": {"NRCA1": refs}}
    for key, val in cfg.items():
        if key == "references":
            config["references"]["NRCA1"].update(val["NRCA1"])
        else:
            config[key] = val
    (work / "my.yaml").write_text(yaml.safe_dump(config))
    before = {k: v for k, v in _tree(work).items() if not k.startswith(".snakemake")}
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"),
                           "-d", str(work), "--cores", "1", "--configfile", str(work / "my.yaml")],
                          capture_output=True, text=True, timeout=120)
    after = {k: v for k, v in _tree(work).items() if not k.startswith(".snakemake")}
    return proc.returncode, proc.stdout + proc.stderr, before, after


# ---- values that can occur: a ramp saturated everywhere ------------------------------------------
def test_saturated_ramp_is_left_out_of_the_cds_noise(tmp_path):
    """An exposure whose raw ramps sit at the ADC limit everywhere goes through the workflow's
    steps (the saturation step flags every group SATURATED) and adds CDS frames of ~0 DN; the
    noise decomposition and the effective noise leave its ramps out and count them, so the
    group's noise tables are the same as without that exposure. Unflagged, the same ramps lower
    them (the issue measured the CDS noise 18 % low)."""
    sys.path.insert(0, str(REPO / "tests"))
    from detcal import io
    from detcal.analysis import noise

    import truthkit

    files = simulate.write_detector_set(dict(SPEC, nints=3, nexposures=4), str(tmp_path / "sim"), 11)
    with fits.open(files["uncal"][1], mode="update") as hdul:
        hdul["SCI"].data[:] = 65535
    products = [truthkit.reduce_exposure(u, files["references"], str(tmp_path / "work"), "NIR",
                                         branches=("nodark",))["noise"] for u in files["uncal"]]
    unflagged = str(tmp_path / "unflagged.fits")
    ramp = io.read_ramp(products[1])
    ramp.groupdq[:] = 0
    io.write_ramp(ramp, unflagged, step="test")

    def cds_noise(paths, name):
        table, _, summary = noise.noise_decomposition_files(
            paths, str(tmp_path / f"{name}_n.tsv"), str(tmp_path / f"{name}_s.tsv"),
            str(tmp_path / f"{name}.json"), None, None, gain=2.0, min_frames=4)
        return table, summary

    ref, ref_summary = cds_noise([products[0]] + products[2:], "good")
    got, summary = cds_noise(products, "with_saturated")
    bad, bad_summary = cds_noise([products[0], unflagged] + products[2:], "unflagged")
    # left out 7.69 DN, unflagged 6.66 DN (seed 11): the ~0 DN frames pull the noise 13 % low
    assert bad_summary["summary"]["cds_noise_DN"] < 0.95 * ref_summary["summary"]["cds_noise_DN"]
    npairs = len(noise.cds_pairs(SPEC["ngroups"]))
    assert summary["n_cds_frames_excluded_flagged"] == 3 * npairs
    assert ref_summary["n_cds_frames_excluded_flagged"] == 0
    assert summary["n_cds_frames"] == ref_summary["n_cds_frames"]
    assert got.equals(ref)
    assert not bad.equals(ref)

    from detcal.analysis import effnoise

    def effective(paths, name):
        table, doc = effnoise.effective_noise_files(
            paths, str(tmp_path / f"{name}_e.tsv"), str(tmp_path / f"{name}_e.json"), None, gain=2.0,
            min_ramps=4)[:2]
        return table, doc

    ref, ref_doc = effective([products[0]] + products[2:], "good")
    got, doc = effective(products, "with_saturated")
    bad, _ = effective([products[0], unflagged] + products[2:], "unflagged")
    assert doc["nramps_excluded_flagged"] == 3 and ref_doc["nramps_excluded_flagged"] == 0
    assert doc["nramps"] == ref_doc["nramps"] == 9
    assert got.equals(ref)
    assert not bad.equals(ref)


def test_every_pattern_that_matches_nothing_is_listed(base, capsys):
    rc = validate.main([str(base / E1), str(base / "nowhere" / "*.fits"), str(base / "elsewhere.fits")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(lines) == 2
    assert "nowhere/*.fits: matches no file" in lines[0] and "elsewhere.fits: matches no file" in lines[1]


def test_real_data_regimes_pass(tmp_path, capsys):
    """No false alarm on the regimes real data have: a 1-output subarray (SUB32TATS), NFRAMES=2
    (BRIGHT2), ~10 s groups, MIRI, several detectors in one run, with their references; and no
    live output taken for a dead one there."""
    import glob

    from detcal.analysis import common

    from test_campaign_mixed import make_campaign

    raw, refs = make_campaign(tmp_path)
    argv = [raw] + [f"--reference={det}:{k}={p}" for det, given in refs.items() for k, p in given.items()]
    assert validate.main(argv) == 0, capsys.readouterr().err
    assert "6 raw files in 3 configuration groups" in capsys.readouterr().out
    files = sorted(glob.glob(raw))
    assert len(files) == 6 and all(common.dead_amplifiers([f]) == [] for f in files)
    miri = next(f for f in files if fits.getval(f, "INSTRUME") == "MIRI")     # 4 interleaved outputs
    with fits.open(miri, mode="update") as hdul:
        geom, amp, _ = common.layout(hdul[0].header, hdul["SCI"].data.shape)
        hdul["SCI"].data[..., amp == 2] = 20000
    assert common.dead_amplifiers([miri]) == [2]


# ---- a full disk: one line naming the product, no partial file ---------------------------------
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _half_then_enospc(original):
    """A writer that writes half of what it would and then finds the disk full."""
    def write(self, target, *args, **kwargs):
        original(self, target, *args, **kwargs)
        if isinstance(target, (str, os.PathLike)) and os.path.exists(target):
            data = Path(target).read_bytes()
            Path(target).write_bytes(data[: len(data) // 2])
        _enospc()
    return write


_REAL_PWRITE = os.pwrite


def _pwrite_half_then_enospc(fd, data, offset):
    """os.pwrite that writes half of a piece and then finds the disk full (io.ImageFileWriter)."""
    view = memoryview(data).cast("B")
    _REAL_PWRITE(fd, view[: view.nbytes // 2], offset)
    _enospc()


def _full_disk_writers(monkeypatch, tmp_path, base):
    """(name, product path, callable writing it) for each kind of writer, with its write patched."""
    import pandas as pd

    from detcal import io, tables
    from detcal.reffiles import common as refcommon

    ramp = io.read_ramp(str(base / E1))
    table = pd.DataFrame({"amplifier": [1, 2], "cds_noise_dn": [10.0, 11.0]})
    return [
        ("fits", io.os, "pwrite", _pwrite_half_then_enospc,        # ramps are written by parts
         tmp_path / "p_ramp.fits", lambda p: io.write_ramp(ramp, p, step="test")),
        ("tsv", pd.DataFrame, "to_csv", _half_then_enospc(pd.DataFrame.to_csv),
         tmp_path / "t.tsv", lambda p: tables.write_tsv(table, p)),
        ("reffile-tsv", pd.DataFrame, "to_csv", _half_then_enospc(pd.DataFrame.to_csv),
         tmp_path / "r.tsv", lambda p: refcommon.write_table(table, p)),
        ("json", tables, "open", None, tmp_path / "a.json", lambda p: tables.write_json({"a": 1}, p)),
    ]


@pytest.mark.parametrize("kind", ["fits", "tsv", "reffile-tsv", "json"])
def test_full_disk_is_one_line_naming_the_product(kind, base, tmp_path, monkeypatch):
    """Writing on a full disk (ENOSPC) stops the job with one line naming the product, keeps the
    product of an earlier run as it was and leaves no partial or temporary file."""
    import builtins

    from detcal import runner

    writers = {w[0]: w for w in _full_disk_writers(monkeypatch, tmp_path, base)}
    _, owner, attr, patched, path, write = writers[kind]
    path.write_bytes(b"product of an earlier run")
    if patched is None:                       # the text writers: open() works, write() fails
        real_open = builtins.open

        def full_open(file, mode="r", *args, **kwargs):
            fh = real_open(file, mode, *args, **kwargs)
            if "w" in mode:
                fh.write = _enospc
            return fh
        monkeypatch.setattr(owner, "open", full_open, raising=False)
    else:
        monkeypatch.setattr(owner, attr, patched)
    with pytest.raises(SystemExit) as exc:
        with runner.logged(None, "test"):
            write(str(path))
    message = str(exc.value.code)
    assert message == f"error: {path}: cannot write this product: No space left on device [errno 28]"
    assert path.read_bytes() == b"product of an earlier run"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]    # no temporary file left
    monkeypatch.undo()
    write(str(path))                          # with space again the same call writes the product
    assert path.read_bytes() != b"product of an earlier run"


# ---- random bytes in an integer SCI: valid level-1b, garbage values ----------------------------
def _group_analyses(products, refs, out):
    """The workflow's five group analyses (rules in workflow/rules/analysis.smk) on ``products``
    (truthkit.reduce_exposure results); returns {analysis: exception or None}."""
    from detcal.analysis import darkcurrent, effnoise, jumps, noise, stability

    def paths(kind):
        return [p[kind] for p in products]
    o = f"{out}/"
    calls = {
        "jumps": lambda: jumps.jump_statistics_file(
            paths("jump"), o + "j.tsv", o + "j.json", group="g", events_tsv=o + "je.tsv",
            map_fits=o + "jm.fits",
            map_png=o + "jm.png", examples_tsv=o + "jx.tsv", ramp_png=o + "jr.png", grid_png=o + "jg.png",
            significance_png=o + "js.png", gain_path=refs["gain"], readnoise_path=refs["readnoise"]),
        "dark_current": lambda: darkcurrent.dark_current_file(
            paths("rateints"), refs["gain"], o + "d.tsv", o + "d.json", group="g", histogram_tsv=o + "dh.tsv",
            histogram_png=o + "dh.png", image_fits=o + "di.fits", image_png=o + "di.png",
            ramp_paths=paths("jump")),
        "stability": lambda: stability.stability_file(
            paths("rateints"), o + "s.tsv", o + "s.json", trends_tsv=o + "st.tsv", group="g",
            ramp_paths=paths("jump"), bias_paths=paths("raw"), gain_path=refs["gain"],
            baseline_tsv=o + "sb.tsv",
            baseline_pixels_tsv=o + "sbp.tsv", trend_png=o + "st.png", baseline_png=o + "sb.png"),
        "effective_noise": lambda: effnoise.effective_noise_files(
            paths("noise"), o + "e.tsv", o + "e.json", o + "e.png", gain_path=refs["gain"],
            readnoise_path=refs["readnoise"]),
        "noise_decomposition": lambda: noise.noise_decomposition_files(
            paths("noise"), o + "n.tsv", o + "p.tsv", o + "n.json", o + "n.png", o + "p.png",
            gain_path=refs["gain"]),
    }
    failures = {}
    for name, call in calls.items():
        try:
            call()
            failures[name] = None
        except Exception as exc:  # noqa: BLE001 - the test reports which analysis raised what
            failures[name] = exc
    return failures


def test_random_bytes_in_sci_run_through_every_analysis(tmp_path):
    """Valid uint16 SCI filled with random bytes (one file over the whole range, so saturated
    almost everywhere; one below the saturation level, so garbage enters every statistic) goes
    through the workflow's steps and every group analysis without an exception."""
    sys.path.insert(0, str(REPO / "tests"))
    import truthkit

    files = simulate.write_detector_set(dict(SPEC, ngroups=5, nints=2), str(tmp_path / "sim"), 5)
    rng = np.random.default_rng(13)
    for path, high in zip(files["uncal"][:2], (65536, 50000)):
        with fits.open(path, mode="update") as hdul:
            hdul["SCI"].data[:] = rng.integers(0, high, hdul["SCI"].data.shape, dtype=np.uint16)
    refs = files["references"]
    products = [truthkit.reduce_exposure(u, refs, str(tmp_path / "work"), "NIR") for u in files["uncal"]]
    (tmp_path / "out").mkdir()
    failures = _group_analyses(products, refs, tmp_path / "out")
    assert failures == dict.fromkeys(failures), failures
    doc = yaml.safe_load((tmp_path / "out" / "n.json").read_text())
    from detcal.analysis import noise
    assert doc["n_cds_frames_excluded_flagged"] == 2 * len(noise.cds_pairs(5))   # the saturated file's


def test_power_spectrum_fit_of_non_finite_spectra_is_nan():
    """lstsq on overflowing spectra raised LinAlgError ('SVD did not converge'); now NaN amplitudes."""
    from detcal.analysis import noise

    y = np.array([1.0, np.inf, 2.0, 3.0])
    design = np.column_stack([np.ones(4), np.arange(4.0)])
    p, err, chi2 = noise.fit_linear_psd(y, design, np.ones(4), lambda m: m ** 2)
    assert np.isnan(p).all() and np.isnan(err).all() and np.isnan(chi2)


def test_group_saturated_everywhere_is_measured_as_nan_with_a_note(tmp_path):
    """A configuration group whose raw ramps are saturated everywhere (a valid input: SCI at the
    ADC limit) goes through the workflow's steps; every group analysis writes its outputs with
    NaN numbers, zero counts and a note saying why, and the group's summary row shows N/A
    verdicts and those notes (the noise analyses stopped the run with one line before)."""
    sys.path.insert(0, str(REPO / "tests"))
    from detcal.analysis import noise, summary

    import truthkit

    spec = dict(SPEC, ngroups=5, nints=2)
    files = simulate.write_detector_set(spec, str(tmp_path / "sim"), 7)
    for path in files["uncal"]:
        with fits.open(path, mode="update") as hdul:
            hdul["SCI"].data[:] = 65535
    refs = files["references"]
    products = [truthkit.reduce_exposure(u, refs, str(tmp_path / "work"), "NIR") for u in files["uncal"]]
    out = tmp_path / "out"
    out.mkdir()
    failures = _group_analyses(products, refs, out)
    assert failures == dict.fromkeys(failures), failures
    nramps = spec["nexposures"] * spec["nints"]
    docs, missing = summary.load_documents({name: str(out / f"{short}.json") for name, short in (
        ("jumps", "j"), ("darkcurrent", "d"), ("stability", "s"), ("effective_noise", "e"),
        ("noise_decomposition", "n"))})
    assert missing == []
    nd, ef = docs["noise_decomposition"], docs["effective_noise"]
    assert nd["n_cds_frames"] == 0
    assert nd["n_cds_frames_excluded_flagged"] == nramps * len(noise.cds_pairs(spec["ngroups"]))
    assert nd["summary"]["cds_noise_DN"] is None and nd["summary"]["note"] == nd["note"]
    assert nd["note"].startswith(f"no usable data: all {nd['n_cds_frames_excluded_flagged']} CDS frames")
    assert ef["nramps"] == 0 and ef["nramps_excluded_flagged"] == nramps
    assert ef["summary"]["effective_noise_max_n_e"] is None
    assert ef["summary"]["note"].startswith(f"no usable data: all {nramps} ramps")
    for tsv, col in (("n.tsv", "cds_noise_DN"), ("e.tsv", "eff_noise_spatial_DN"),
                     ("d.tsv", "mean_DN_per_s")):
        table = pd.read_csv(out / tsv, sep="\t")
        assert len(table) and table[col].isna().all(), tsv
    assert (out / "n.png").exists() and (out / "p.png").exists() and (out / "e.png").exists()
    dark, stab, jump = (docs[k]["summary"] for k in ("darkcurrent", "stability", "jumps"))
    assert dark["dark_current_e_per_1000s"] is None and dark["verdict"] == "N/A"
    assert dark["note"].startswith("no usable pixel")
    assert stab["any_drift"] == "N/A" and stab["dark_DN_per_s"] is None and stab["hot_pixels"] is None
    assert stab["note"].startswith("no usable pixel")
    assert jump["n_events_up"] == 0 and jump["cr_rate_events_per_cm2_per_s"] is None and jump["note"]
    row = summary.summary_row("g", docs)
    assert row["dark_verdict"] == "N/A" and row["stability_any_drift"] == "N/A"
    assert row["dark_current_e_per_1000s"] is None and row["cds_noise"] is None
    assert row["effective_noise_max_n"] is None and row["cr_rate_events_per_cm2_per_s"] is None
    for name in docs:
        assert row[f"{name}.note"], name                  # every analysis says why


# ---- malformed YAML given with --configfile ----------------------------------------------------
SNAKEMAKE_BAD_YAML = ("Config file is not valid JSON or YAML. In case of YAML, make sure to not mix "
                      "whitespace and tab indentation.")


@pytest.mark.parametrize("text, problem", [
    ("raw: data/*.fits\nanalysis:\n  min_ramps: 4\n\tbad: 1\n",
     r"line 4, column 1: while scanning for the next token: found character '\\t'"),
    ("raw: [a.fits, b.fits\n", r"line 2, column 1: while parsing a flow sequence: expected ',' or ']'"),
    ("- raw\n- demo\n", r"a config file must be a YAML mapping of keys \(got a list\)"),
], ids=["tab", "unclosed-list", "not-a-mapping"])
def test_malformed_config_file_named_with_line(text, problem, tmp_path, capsys):
    """``python -m detcal.validate --configfile F`` (the README's check; Snakemake 9 parses
    --configfile itself and does not name the file) names the file, the line and the problem."""
    user = tmp_path / "my.yaml"
    user.write_text(text)
    assert validate.main(["--configfile", str(user)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {user}: ")
    assert __import__("re").search(problem, lines[0]), lines


@pytest.mark.workflow
def test_snakemake_message_for_malformed_yaml_is_the_documented_one(tmp_path):
    """What Snakemake 9 prints for a malformed --configfile (quoted in config/README.md's
    troubleshooting): exit 1, no traceback, no file name, nothing written."""
    user = tmp_path / "my.yaml"
    user.write_text("raw: [a.fits, b.fits\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"),
                           "-d", str(tmp_path), "--cores", "1", "--configfile", str(user), "-n"],
                          capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert SNAKEMAKE_BAD_YAML in text and "Traceback" not in text
    readme = (REPO / "config" / "README.md").read_text()
    assert SNAKEMAKE_BAD_YAML in " ".join(readme.split())
    assert "python -m detcal.validate --configfile" in readme
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".snakemake") == ["my.yaml"]


# ---- values that can occur: a dead output ---------------------------------------------------------
def test_dead_output_is_flagged_and_left_out_of_the_group_statistics(tmp_path):
    """An amplifier that reads a constant (dead or stuck output) goes through the workflow's steps;
    the noise decomposition and the effective noise report it (JSON ``dead_amplifiers``, the
    note) and leave it out of the output averages: the other outputs' rows equal those of the
    same data with a live amplifier there, and the averages are the live outputs'."""
    sys.path.insert(0, str(REPO / "tests"))
    from detcal import dqflags
    from detcal.analysis import darkcurrent, effnoise, jumps, noise, stability
    from detcal.geometry import Geometry
    from detcal.reffiles import badpix

    import truthkit

    spec = dict(SPEC, ngroups=5, nints=3, nexposures=4)
    files = simulate.write_detector_set(spec, str(tmp_path / "sim"), 21)
    refs = files["references"]

    def analyse(name, kill):
        out = []
        for raw in files["uncal"]:
            path = tmp_path / name / os.path.basename(raw)
            path.parent.mkdir(exist_ok=True)
            shutil.copy(raw, path)
            if kill:
                with fits.open(path, mode="update") as hdul:
                    amp = Geometry.from_header(hdul[0].header, hdul["SCI"].data.shape).amplifier_map()
                    hdul["SCI"].data[..., amp == 1] = 12000      # amplifier 2 stuck at 12000 DN
            out.append(truthkit.reduce_exposure(str(path), refs, str(tmp_path / name / "work"), "NIR",
                                                branches=("nodark",)))
        o = str(tmp_path / name) + "/"
        dark[name] = darkcurrent.dark_current_file([p["rateints"] for p in out], refs["gain"], o + "d.tsv",
                                                   o + "d.json", group="g", raw_paths=[p["raw"] for p in out])
        mask[name] = badpix.make_mask([p["rateints"] for p in out], [p["jump"] for p in out], o + "mask.fits",
                                      gain_path=refs["gain"], raw_paths=[p["raw"] for p in out])
        stab[name] = stability.stability_file([p["rateints"] for p in out], o + "s.tsv", o + "s.json",
                                              group="g",
                                              ramp_paths=[p["jump"] for p in out],
                                              bias_paths=[p["raw"] for p in out], gain_path=refs["gain"])
        cr[name] = jumps.jump_statistics_file([p["jump"] for p in out], o + "j.tsv", o + "j.json", group="g",
                                              gain_path=refs["gain"], readnoise_path=refs["readnoise"],
                                              raw_paths=[p["raw"] for p in out])
        ramps = [p["noise"] for p in out]
        eff = effnoise.effective_noise_files(ramps, o + "e.tsv", o + "e.json", None, gain_path=refs["gain"],
                                             min_ramps=4)[:2]
        return noise.noise_decomposition_files(ramps, o + "n.tsv", o + "p.tsv", o + "n.json", None, None,
                                               gain_path=refs["gain"]), eff

    dark, cr, mask, stab = {}, {}, {}, {}
    (live_table, _, live_doc), (live_eff, live_edoc) = analyse("live", False)
    (table, _, doc), (eff, edoc) = analyse("dead", True)
    assert live_edoc["dead_amplifiers"] == [] and edoc["dead_amplifiers"] == [2]
    # MASK: every active pixel of the dead amplifier DEAD + DO_NOT_USE (pixel DQ as jwst_reffiles)
    with fits.open(mask["dead"]["path"]) as hdul:
        dq = hdul["DQ"].data
        geom = Geometry.from_header(hdul[0].header, dq.shape)
    amp, ref = geom.amplifier_map(), geom.reference_mask()
    flag = dqflags.DEAD | dqflags.DO_NOT_USE
    assert ((dq[(amp == 1) & ~ref] & flag) == flag).all()
    assert mask["dead"]["counts"]["dead"] - mask["live"]["counts"]["dead"] == int(((amp == 1) & ~ref).sum())
    # stability: the whole-array values are the live amplifiers', theirs unchanged
    assert stab["live"]["summary"]["dead_amplifiers"] == []
    assert stab["dead"]["summary"]["dead_amplifiers"] == [2]
    live_amps = [r for r in stab["dead"]["table"] if r.get("amplifier") in ("1", "3", "4")]
    assert live_amps
    assert live_amps == [r for r in stab["live"]["table"] if r.get("amplifier") in ("1", "3", "4")]
    # CR rate: the dead amplifier is no detection area; the others' rows are unchanged
    got, want = cr["dead"]["summary"], cr["live"]["summary"]
    assert want["dead_amplifiers"] == [] and got["dead_amplifiers"] == [2] and "amplifier(s) 2" in got["note"]
    rows = {r["amplifier"]: r for r in cr["dead"]["table"] if r["exposure"] == "all"}
    live_rows = {r["amplifier"]: r for r in cr["live"]["table"] if r["exposure"] == "all"}
    assert rows["2"]["n_active_pixels"] == 0 and rows["2"]["n_events"] == 0
    for a in ("1", "3", "4"):
        assert rows[a]["n_active_pixels"] == live_rows[a]["n_active_pixels"]
        assert rows[a]["n_events_up"] == live_rows[a]["n_events_up"]
    live_area = sum(rows[a]["exposure_cm2_s"] for a in ("1", "3", "4"))
    assert rows["all"]["exposure_cm2_s"] == pytest.approx(live_area)
    # dark current: the dead amplifier's row stays, the whole-array value is the live amplifiers'
    got, want = dark["dead"]["summary"], dark["live"]["summary"]
    assert want["dead_amplifiers"] == [] and got["dead_amplifiers"] == [2]
    assert "dead or flat amplifier(s) 2" in got["note"]
    rows = {r["amplifier"]: r for r in dark["dead"]["table"]}
    live_rows = {r["amplifier"]: r for r in dark["live"]["table"]}
    assert all(rows[a] == live_rows[a] for a in ("1", "3", "4"))
    live_pixels = sum(rows[a]["n_pixels_selected"] for a in ("1", "3", "4"))
    assert rows["all"]["n_pixels_selected"] == live_pixels < live_rows["all"]["n_pixels_selected"]
    assert "dead or flat amplifier(s) 2" in edoc["note"]
    for chan in ("1", "3", "4"):
        assert eff[eff.amplifier == chan].reset_index(drop=True).equals(
            live_eff[live_eff.amplifier == chan].reset_index(drop=True))
    for col in ("eff_noise_temporal_DN", "eff_noise_spatial_DN"):
        per = eff[eff.amplifier.isin(["1", "3", "4"])].pivot(index="ngroups_fit", columns="amplifier",
                                                            values=col)
        avg = eff[eff.amplifier == "all"].set_index("ngroups_fit")[col]
        np.testing.assert_allclose(avg, np.sqrt((per ** 2).mean(axis=1)), rtol=1e-6)
    assert live_doc["dead_amplifiers"] == [] and doc["dead_amplifiers"] == [2]
    assert "dead or flat amplifier(s) 2" in doc["note"]
    key = ["pixels", "component", "statistic"]
    others = table[table.amplifier.isin(["1", "3", "4"])].reset_index(drop=True)
    ref = live_table[live_table.amplifier.isin(["1", "3", "4"])].reset_index(drop=True)
    same = others.component.isin(["total", "white"])
    assert others[same].equals(ref[same])                  # per output: the same numbers
    # the 1/f split is the 3 live outputs' (not pulled to 0 by the dead one: ratios were 0.0-0.5)
    ratio = (others.cds_noise_DN / ref.cds_noise_DN)[~same & np.isfinite(ref.cds_noise_DN)
                                                      & (ref.cds_noise_DN > 0)]
    assert ratio.between(0.7, 1.4).all(), ratio.describe()
    dead_rows = table[(table.amplifier == "2") & (table.pixels == "active") & (table.component == "total")]
    assert (dead_rows.cds_noise_DN < 1e-3).all()          # still reported per output
    for (pix, comp, stat), rows in table.groupby(key):
        per = rows[rows.amplifier.isin(["1", "3", "4"])].cds_noise_DN.to_numpy()
        avg = rows[rows.amplifier == "all"].cds_noise_DN.iloc[0]
        if np.isfinite(per).all():
            np.testing.assert_allclose(avg, np.sqrt(np.mean(per ** 2)), rtol=1e-9, err_msg=(pix, comp, stat))
    # the summary's group numbers (power-spectrum fit of the output mean): the live outputs'
    # within 3 sigma; with the dead output averaged in, the white CDS noise was sqrt(3/4) of it
    got, want = doc["summary"], live_doc["summary"]
    for name, err_name in (("cds_noise_DN", "cds_noise_err_DN"), ("pink_corr_rms_e", "pink_corr_rms_err_e")):
        err = np.hypot(got[err_name], want[err_name])
        assert abs(got[name] - want[name]) <= 3 * err, (name, got[name], want[name], err)
    assert abs(got["cds_noise_DN"] - want["cds_noise_DN"]) < abs(np.sqrt(0.75) - 1) * want["cds_noise_DN"] / 3


# ---- the table of cases for the note: python tests/test_bad_inputs.py [--workflow] -------
def print_table(with_workflow=False):
    """Markdown table (case, exit code, the message) of :data:`CASES` (and, with ``with_workflow``,
    :data:`WORKFLOW_CASES` through ``snakemake``), made the way the tests make them; the paths of
    the temporary directory are shortened to ``<data>`` / ``<work>``."""
    import re
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = tmp / "good"
        simulate.write_detector_set(SPEC, str(base), 5)
        print("| case | exit code | message (stderr; one line per problem) |\n|---|---|---|")
        rows = []
        for k, case in enumerate(CASES):
            rc, out, err, *_ = run_case(case, base, tmp / f"c{k}" / "data")
            rows.append((case[0], rc, err.strip().replace(str(tmp / f"c{k}" / "data"), "<data>")))
        if with_workflow:
            for k, case in enumerate(WORKFLOW_CASES):
                rc, text, *_ = run_workflow_case(case, base, tmp / f"w{k}")
                errors = [line for line in text.splitlines() if line.startswith("error:")]
                lines = [errors[0]] if errors else text.strip().splitlines()[-1:]
                idx = text.splitlines().index(lines[0]) if errors else 0
                lines += [ln for ln in text.splitlines()[idx + 1:idx + 4]        # further problem lines
                          if ln and not ln.startswith(("Error", "[")) and 'File "' not in ln]
                rows.append((case[0], rc, "\n".join(lines).replace(str(tmp / f"w{k}" / "data"), "<data>")
                             .replace(str(tmp / f"w{k}" / "work"), "<work>")))
        for name, rc, message in rows:
            cell = re.sub(r"\s*\n\s*", " <br> ", message).replace("|", "\\|")
            print(f"| {name} | {rc} | {cell} |")


if __name__ == "__main__":
    print_table(with_workflow="--workflow" in sys.argv)
