"""The analysis toolkit is one toolkit (issue 12): each statistic, check and writer defined once.

Static checks read the package's source (``ast``), so they fail as soon as a second definition,
a private name used across modules or an import against the floors comes back; the unit tests
pin what the shared helpers compute.
"""

import ast
import math
import pathlib

import numpy as np
import pytest
import scipy.stats
from astropy.io import fits
from astropy.stats import mad_std

from detcal import inventory, keywords
from detcal.analysis import common, noise, robust
from detcal.errors import InputError

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "detcal"

#: The robust statistics: defined in detcal/analysis/robust.py and nowhere else.
STATISTICS = ("MAD_TO_SIGMA", "mad_sigma", "mad_sigma_along", "clipped_sigma", "clipped_stats",
              "ClippedStats", "clipped_mean_std_images", "truncated_normal_std", "clip_bias_factor",
              "median_variance", "chi2_median_factor", "PixelMoments", "robust_sigma", "sigma_clipped_stats",
              "STATS_WORK_MB", "STATS_BYTES_PER_VALUE")

#: Shared helpers and conventions, each defined in one module only.
ONE_PLACE = {"tables.py": ("write_tsv", "write_json", "read_json", "records", "jsonable"),
             "inventory.py": ("check_one_group", "check_same_group", "group_values", "group_name"),
             "plots.py": ("save_figure",),
             "multiaccum.py": ("frames_per_integration", "readout_frames", "group_frames", "group_time",
                               "frame_samples", "frame_time", "PIXEL_TIME_S", "PIXEL_TIME", "ROW_OVERHEAD",
                               "int_numbers"),
             "analysis/common.py": ("amplifier_gains", "output_gains", "read_gain", "mean_gain",
                                    "dead_outputs", "good_pixels", "amplifier_labels")}

#: Core modules (the lowest floor): no module-level import of a higher floor.
CORE = ("dqflags", "errors", "keywords", "geometry", "io", "tables", "noise_conventions", "multiaccum")
HIGHER = ("steps", "analysis", "reffiles", "runner", "pipeline", "simulate", "ccd", "inventory",
          "validate", "plots", "demo")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def _top_level_names(tree):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))


def test_each_robust_statistic_is_defined_once_in_the_robust_module():
    where = {}
    for rel, tree in _modules():
        for name in _top_level_names(tree):
            if name in STATISTICS:
                where.setdefault(name, []).append(rel)
    assert {n: w for n, w in where.items() if w != ["analysis/robust.py"]} == {}
    assert "robust_sigma" not in where          # the old name meant two different statistics


def test_shared_helpers_and_readout_conventions_are_defined_once():
    where = {}
    for rel, tree in _modules():
        for name in _top_level_names(tree):
            for home, names in ONE_PLACE.items():
                if name in names:
                    where.setdefault(name, (home, []))[1].append(rel)
    assert {n: w for n, (home, w) in where.items() if w != [home]} == {}


def test_no_hard_coded_mad_constant_outside_the_robust_module():
    """1.4826 (multiplier) and 0.67449 (divisor) are the same constant; only MAD_TO_SIGMA holds it."""
    found = []
    for rel, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, float):
                if any(abs(node.value / c - 1) < 1e-3 for c in (1.4826, 0.67449)):
                    found.append((rel, node.lineno, node.value))
    assert found == []


def test_mad_to_sigma_is_the_gaussian_multiplier_and_mad_sigma_is_astropys_mad_std():
    assert robust.MAD_TO_SIGMA == pytest.approx(1.0 / scipy.stats.norm.ppf(0.75), rel=1e-15)
    assert robust.MAD_TO_SIGMA == pytest.approx(1.4826, rel=1e-4)
    rng = np.random.default_rng(7)
    x = rng.normal(3.0, 2.0, 5001)
    x[::97] = np.nan
    assert robust.mad_sigma(x) == pytest.approx(mad_std(x, ignore_nan=True), rel=1e-12)
    stack = rng.normal(0.0, 1.5, (9, 4, 5))
    np.testing.assert_allclose(robust.mad_sigma_along(stack), mad_std(stack, axis=0), rtol=1e-12)
    assert math.isnan(robust.mad_sigma([np.nan, np.inf]))


def test_clipped_sigma_is_unbiased_and_differs_from_the_mad_sigma_on_integer_data():
    rng = np.random.default_rng(11)
    x = np.round(rng.normal(0.0, 1.3, 400_000))       # CDS of raw DN: integer-valued
    truth = math.sqrt(1.3 ** 2 + 1 / 12)                # rounding adds 1/12 DN^2
    assert robust.clipped_sigma(x) == pytest.approx(truth, rel=0.005)
    assert abs(robust.mad_sigma(x) / truth - 1) > 0.03  # the MAD moves in steps of 1.48 DN


def test_no_private_name_is_used_across_modules():
    crossing = []
    for rel, tree in _modules():
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        crossing.append((rel, node.lineno, alias.name))
                    imported.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and isinstance(node.value, ast.Name)
                    and node.value.id in imported):
                crossing.append((rel, node.lineno, f"{node.value.id}.{node.attr}"))
    assert crossing == []


def _module_level_imports(rel, tree):
    """Package modules (first component below detcal) that ``rel`` imports at module level."""
    depth = len(pathlib.PurePosixPath(rel).parts) - 1          # directories below detcal/
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1                              # '.' is the module's own package
                parts = list(pathlib.PurePosixPath(rel).parts[:-1])[:max(depth - up, 0)]
                target = parts + (node.module.split(".") if node.module else [])
                out.update([target[0]] if target else [a.name for a in node.names])
            elif node.module and node.module.startswith("detcal."):
                out.add(node.module.split(".")[1])
    return out


def test_the_floors_core_below_steps_below_analysis_and_the_simulator_beside():
    problems = []
    for rel, tree in _modules():
        top = pathlib.PurePosixPath(rel).parts[0].removesuffix(".py")
        deps = _module_level_imports(rel, tree) - {top}
        if top in CORE and deps & set(HIGHER):
            problems.append((rel, sorted(deps & set(HIGHER))))
        if top in ("analysis", "reffiles", "steps", "ccd") and "simulate" in deps:
            problems.append((rel, "imports the simulator"))
        if top == "analysis" and "reffiles" in deps:         # reffiles use the analysis toolkit
            problems.append((rel, "the analysis imports the reference-file builders"))
        if top == "simulate" and deps & {"analysis", "reffiles", "runner", "steps"}:
            problems.append((rel, "the simulator imports the analysis"))
    assert problems == []
    source = (PACKAGE / "analysis" / "common.py").read_text()
    assert "pipeline" not in _module_level_imports("analysis/common.py", ast.parse(source))


def _header(**changes):
    h = fits.Header()
    values = {"DETECTOR": "NRCA1", "SUBARRAY": "FULL", "READPATT": "RAPID", "NOUTPUTS": 4,
              "NGROUPS": 10, "NFRAMES": 1, "GROUPGAP": 0, "SUBSTRT1": 1, "SUBSTRT2": 1}
    values.update(changes)
    for key, value in values.items():
        h[key] = value
    return h


@pytest.mark.parametrize("key, other", [("DETECTOR", "NRCA2"), ("SUBARRAY", "SUB64P"),
                                        ("READPATT", "BRIGHT2"), ("NOUTPUTS", 1), ("NGROUPS", 9),
                                        ("NFRAMES", 2), ("GROUPGAP", 1), ("CORONMSK", "MASKA335R")])
def test_the_one_group_check_names_the_file_and_every_group_keyword(key, other):
    assert set(keywords.GROUP) | set(keywords.GROUP_OPTIONAL) >= {key}
    with pytest.raises(InputError) as exc:
        inventory.check_one_group([_header(), _header(**{key: other})], ["a_rate.fits", "b_rate.fits"])
    message = str(exc.value)
    assert "b_rate.fits" in message and f"{key}=" in message and "a_rate.fits" in message
    assert inventory.check_one_group([_header(), _header()], ["a", "b"])["READPATT"] == "RAPID"


def test_the_noise_analyses_use_the_one_group_check():
    """READPATT and NOUTPUTS were missing from the noise analyses' own key list."""
    class Ramp:
        def __init__(self, path, **changes):
            self.path, self.header = path, _header(**changes)
            self.shape, self.meta = (2, 10, 8, 8), {"TGROUP": 10.7}
    for key, other in (("READPATT", "BRIGHT2"), ("NOUTPUTS", 1)):
        with pytest.raises(InputError, match=f"{key}="):
            noise.check_same_configuration(Ramp("a.fits"), Ramp("b.fits", **{key: other}))
    noise.check_same_configuration(Ramp("a.fits"), Ramp("b.fits"))
    with pytest.raises(InputError, match="SUBSTRT1="):
        inventory.check_one_group([_header(), _header(SUBSTRT1=5)], ["a", "b"], also=("SUBSTRT1",))


def test_one_exposure_name_for_raw_files_and_products():
    assert inventory.exposure_name("/x/jw01_nrca1_uncal.fits") == "jw01_nrca1"
    assert inventory.exposure_name("/x/demo_nrca1_e001_jumpstep.fits") == "demo_nrca1_e001_jumpstep"
    for suffix in ("jumpstep", "refpixstep", "rate", "rateints", "rscd_step", "uncal"):
        assert inventory.exposure_name(f"r/demo_e002_{suffix}.fits", product=True) == "demo_e002"
    assert inventory.exposure_name("r/demo_e002.fits.gz", product=True) == "demo_e002"


def test_amplifier_gains_are_medians_of_finite_positive_gains_per_selection():
    gain = np.array([[2.0, 2.2, np.nan, 0.0], [2.1, -1.0, 4.0, 4.4]], np.float32)
    amp = np.array([[0, 0, 1, 1], [0, 0, 1, 1]])
    masks = common.amplifier_masks(amp, np.ones(amp.shape, bool), 2)
    got = common.amplifier_gains(gain, masks)
    assert got == pytest.approx({"1": 2.1, "2": 4.2, "all": 2.2})
    everywhere = np.ones(amp.shape, bool)
    assert common.output_gains(None, None, amp.shape, amp, everywhere, 1.8).tolist() == [1.8, 1.8]
    assert np.isnan(common.output_gains(None, None, amp.shape, amp, everywhere)).all()
    assert common.amplifier_labels(4) == ["1", "2", "3", "4", "all"]
