"""A step is one module: its descriptor is all the package and the workflow need.

A trivial step (``noop``: multiplies the ramp by ``factor`` and by an optional reference image of
a new type, NOOPREF; NIR only, after linearity) is written to a temporary module and registered;
the step order, the registry, the reference table and reference type, the keyword lists, the
config schema (steps, parameters with its default, references) and a Snakemake dry run's rule
all derive from it. A step that is not implemented (persistence) or unknown is a
one-line config error naming the file and the key.
"""

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from detcal import io, keywords, pipeline, runner, steps, validate
from detcal.errors import InputError
from detcal.steps import descriptor

from conftest import make_ramp

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

NOOP = '''
"""Test step: multiply every group by ``factor`` and by a NOOPREF image when one is given."""
import numpy as np

from detcal.steps.descriptor import Param, ReferenceType, Step

DESCRIPTOR = Step(
    name="noop", description="Test step: multiply every group by factor",
    position={"NIR": 55}, cal_step="S_NOOP", suffix="noopstep",
    references=("gain", "noopref"), optional_references=("gain", "noopref"), keywords=("TGROUP",),
    parameters={"factor": Param(1.0, "Multiplier [dimensionless]", {"exclusiveMinimum": 0})},
    reference_types={"noopref": ReferenceType("NOOPREF", {"SCI": (np.float32, 2, True)},
                                              "ReferenceImageModel", "NOOPREF reference (multiplier image)")})


def run(ramp, refs, factor=1.0):
    ramp.meta("noop")                       # the descriptor's keywords, checked
    scale = np.float32(factor) * (refs["noopref"].data if "noopref" in refs else np.float32(1))
    ramp.data = (ramp.data * scale).astype(np.float32)
    return ramp
'''

#: A tiny demo: one NIR detector, one 32-pixel exposure; no CCD branch; one rule per step.
TINY = {"raw": "demo", "ccd": {"demo": None}, "pipeline": {"mode": "steps"},
        "demo": {"seed": 3, "detectors": [{"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 4,
                                           "nints": 1, "nexposures": 1}]}}


@pytest.fixture
def noop_module(tmp_path):
    path = tmp_path / "noop_step.py"
    path.write_text(textwrap.dedent(NOOP))
    steps.register(str(path))
    yield path
    steps.unregister("noop")


def test_registered_step_is_in_the_order_registry_references_and_keyword_lists(noop_module):
    nir = pipeline.chain("NIR", {})
    assert nir.index("noop") == nir.index("linearity") + 1 and nir[nir.index("noop") + 1] == "dark_current"
    assert "noop" not in pipeline.chain("MIRI", {})
    assert pipeline.chain("NIR", {"noop": False}) == tuple(s for s in nir if s != "noop")
    assert steps.REGISTRY["noop"].__file__ == str(noop_module)
    assert pipeline.SUFFIX["noop"] == "noopstep" and "noop" in pipeline.RAMP_STEPS
    assert pipeline.REFERENCES["noop"] == ("gain", "noopref") == pipeline.OPTIONAL_REFERENCES["noop"]
    assert io.REFTYPES["noopref"] == "NOOPREF" and io.LAYOUT["NOOPREF"]["SCI"][2]
    assert keywords.CAL_STEP["noop"] == "S_NOOP"
    assert keywords.STEP["noop"] == keywords.BASE + ("TGROUP",)
    assert pipeline.previous_step("NIR", {}, "dark_current") == "noop"
    assert "noop" not in pipeline.nodark_steps("NIR", {})


def test_registered_step_is_in_the_schema_with_its_parameter_default(noop_module):
    schema = validate.config_schema(SCHEMA)
    props = schema["properties"]
    assert props["steps"]["properties"]["noop"] == {
        "type": "boolean", "default": True, "description": "Test step: multiply every group by factor"}
    assert props["parameters"]["properties"]["noop"]["properties"]["factor"] == {
        "type": "number", "exclusiveMinimum": 0, "default": 1.0, "description": "Multiplier [dimensionless]"}
    assert "noop" in props["keep"]["items"]["enum"]
    reference_set = schema["definitions"]["reference_set"]["properties"]
    assert "noop" in reference_set["steps"]["properties"]
    assert reference_set["noopref"] == {"type": "string",
                                        "description": "NOOPREF reference (multiplier image)"}
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    good = {**config, "steps": {"noop": False}, "parameters": {"noop": {"factor": 2.0}}}
    assert validate.config_problems(good, SCHEMA) == []
    bad = validate.config_problems({**config, "parameters": {"noop": {"factor": 0}}}, SCHEMA)
    assert len(bad) == 1 and "parameters:noop:factor = 0" in bad[0]


def test_complete_schema_is_printed_with_the_registered_steps(noop_module, capsys):
    assert validate.main(["--schema"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == validate.config_schema(SCHEMA)
    assert printed["properties"]["parameters"]["properties"]["noop"]["properties"]["factor"]["default"] == 1.0


def test_unregistered_step_is_an_unknown_config_key(noop_module, tmp_path):
    steps.unregister("noop")
    user = tmp_path / "my.yaml"
    user.write_text("steps: {noop: true}\n")
    config = {**yaml.safe_load((REPO / "config/config.yaml").read_text()), "steps": {"noop": True}}
    lines = validate.config_problems(config, SCHEMA, [REPO / "config/config.yaml", user])
    assert len(lines) == 1 and lines[0].startswith(f"{user}: unknown config key steps:noop (value True)")
    assert "noop" not in pipeline.ORDER["NIR"] and "noop" not in keywords.CAL_STEP
    assert "noopref" not in io.REFTYPES and "NOOPREF" not in io.LAYOUT
    assert "noopref" not in validate.config_schema(SCHEMA)["definitions"]["reference_set"]["properties"]


def test_registered_step_runs_through_the_runner_with_its_status_keyword(noop_module, tmp_path):
    ramp = make_ramp(1, 3, 8, 8, data=np.arange(192, dtype=np.float32).reshape(1, 3, 8, 8))
    raw = tmp_path / "raw.fits"
    io.write_ramp(ramp, raw)
    out = runner.run_step_file("noop", str(raw), {}, str(tmp_path / "out.fits"), {"factor": 2.0})
    np.testing.assert_array_equal(out.data, 2 * ramp.data)
    header = fits.getheader(tmp_path / "out.fits")
    assert header["S_NOOP"] == "COMPLETE"
    np.testing.assert_array_equal(io.read_ramp(tmp_path / "out.fits").data, 2 * ramp.data)
    # a reference of the type the step brings: written, read (cut to the ramp) and applied
    scale = np.full((8, 8), 3.0, np.float32)
    io.write_reference(tmp_path / "noopref.fits", "NOOPREF", {"SCI": scale}, ramp.header)
    out = runner.run_step_file("noop", str(raw), {"noopref": str(tmp_path / "noopref.fits")},
                               str(tmp_path / "out3.fits"))
    np.testing.assert_array_equal(out.data, 3 * ramp.data)
    assert fits.getheader(tmp_path / "noopref.fits")["DATAMODL"] == "ReferenceImageModel"
    del ramp.header["TGROUP"]                    # the keyword the descriptor says noop needs
    io.write_ramp(ramp, tmp_path / "no_tgroup.fits")
    with pytest.raises(InputError, match=r"no_tgroup.fits.*missing header keyword TGROUP \(needed by noop\)"):
        runner.run_step_file("noop", str(tmp_path / "no_tgroup.fits"), {}, str(tmp_path / "x.fits"))


def test_uniform_result_names_each_product():
    ramp_fit = descriptor.get("ramp_fit")
    dark = descriptor.get("dark_current")
    assert not ramp_fit.ramp_product and list(ramp_fit.products) == ["rate", "rateints"]
    assert dark.products["dark"].switch == "dark_output" and dark.ramp_product


def test_parameter_defaults_are_the_step_functions_defaults():
    """A schema default that drifted from the code's would change what an empty config runs."""
    from detcal.steps import jump, ramp_fit

    for name, desc in descriptor.DESCRIPTORS.items():
        signature = inspect.signature(steps.REGISTRY[name].run).parameters
        if name == "ramp_fit":
            signature = inspect.signature(ramp_fit.fit_ramps).parameters
        for param, spec in desc.parameters.items():
            code_default = jump.DEFAULTS[param] if name == "jump" else signature[param].default
            assert code_default == spec.default and type(code_default) is type(spec.default), (name, param)


def test_built_in_steps_use_jwst_names_status_keywords_order_and_defaults():
    """Names, S_* keywords (stdatamodels' RampModel schema), the NIR order and the parameter
    defaults of the built-in descriptors are jwst 3.0's (calwebb_detector1)."""
    from jwst.pipeline import Detector1Pipeline
    from stdatamodels.jwst import datamodels

    jwst_steps = Detector1Pipeline.step_defs
    def status_keywords(schema):     # meta.cal_step.<step>.fits_keyword, wherever the schema nests it
        if isinstance(schema, dict):
            if "cal_step" in schema.get("properties", {}):
                steps_ = schema["properties"]["cal_step"]["properties"]
                return {k: v["fits_keyword"] for k, v in steps_.items()}
            children = schema.values()
        else:
            children = schema if isinstance(schema, list) else ()
        return next(filter(None, map(status_keywords, children)), None)

    status = status_keywords(datamodels.RampModel().schema)
    for name, desc in descriptor.DESCRIPTORS.items():
        assert name in jwst_steps, name
        assert desc.cal_step == status[{"dark_current": "dark_sub"}.get(name, name)], name
        step = jwst_steps[name]()
        for param, spec in desc.parameters.items():
            if hasattr(step, param):         # detcal's own options (extrapolate) are not jwst's
                assert (getattr(step, param) or False) == spec.default, (name, param)
    jwst_order = [s for s in jwst_steps if s in pipeline.ORDER["NIR"]]
    assert tuple(jwst_order) == pipeline.ORDER["NIR"]


def _snakemake(workdir, config, env=None):
    workdir.mkdir(exist_ok=True)
    (workdir / "my.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run([SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "--cores", "1",
                           "--configfile", str(REPO / "config/config.yaml"), str(workdir / "my.yaml")],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


@pytest.mark.workflow
def test_dry_run_has_a_rule_for_a_step_module_named_in_the_environment(tmp_path):
    path = tmp_path / "noop_step.py"
    path.write_text(textwrap.dedent(NOOP))
    proc = _snakemake(tmp_path / "work", {**TINY, "parameters": {"noop": {"factor": 2.0}}},
                      env={descriptor.ENV_MODULES: str(path)})
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    stats = text[text.index("Job stats:"):].split("\n\n")[0].splitlines()
    assert ["noop", "1"] in [line.split() for line in stats], text[-3000:]
    # noop reads linearity's product (and the gain reference); dark_current reads noop's
    blocks = text.split("\nrule ")
    noop = next(b for b in blocks if b.startswith("noop:"))
    assert "_linearitystep.fits" in noop and "references/NRCA1/gain.fits" in noop and "_noopstep.fits" in noop
    dark = next(b for b in blocks if b.startswith("dark_current:"))
    assert "_noopstep.fits" in dark.split("output:")[0]


@pytest.mark.workflow
def test_unimplemented_step_switched_on_is_one_line_config_error(tmp_path):
    step = "persistence"      # jwst has it, detcal does not: not offered (an unknown step: see above)
    proc = _snakemake(tmp_path / "work", {**TINY, "steps": {step: True}})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in text
    problems = [line for line in text.splitlines() if "unknown config key" in line]
    assert len(problems) == 1, text[-3000:]
    user = tmp_path / "work" / "my.yaml"
    assert problems[0].startswith(f"{user}: unknown config key steps:{step} (value True)")
    assert len([line for line in text.splitlines() if line.startswith("error:")]) == 1
