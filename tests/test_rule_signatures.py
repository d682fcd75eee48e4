"""Every rule's named inputs, outputs and parameters match the detcal function it calls.

The workflow's scripts move paths by name: ``scripts/group_analysis.py`` passes a rule's named
inputs, named outputs, ``params.kwargs`` (and ``group``) as keyword arguments to
``params.function``; ``scripts/step.py`` passes the non-``ramp`` inputs as the step's references
and ``params.parameters`` as the step's keyword arguments; ``scripts/ramp_fit.py`` likewise for
ramp_fit. A name that drifts fails only when that job runs. Here the DAG of the default
configuration (the demo: NIR and MIRI groups, reference files, the CCD branch) with one rule per
step and a configured stability baseline is built without running a job, and every job's names
are checked against the signature of the function its script calls.
"""

import dataclasses
import importlib
import inspect
import shutil
from pathlib import Path

import pytest
import yaml

from detcal import steps
from detcal.parameters import keyword_parameters

pytestmark = pytest.mark.workflow

REPO = Path(__file__).resolve().parents[1]


def build_jobs(workdir):
    """Jobs of the workflow's DAG for the default config (+ a stability baseline); nothing runs."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        DeploymentSettings,
        OutputSettings,
        ResourceSettings,
    )

    shutil.copytree(REPO / "config", workdir / "config")
    (workdir / "baseline.fits").touch()                  # an input only: its content is never read
    configfile = workdir / "config" / "signatures.yaml"
    config = {"analysis": {"baseline": {"NRCA1": "baseline.fits"}}}
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    if "pipeline" in schema["properties"]:
        config["pipeline"] = {"mode": "steps"}          # one rule per step (fused: scripts/chain.py)
    configfile.write_text(yaml.safe_dump(config))
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(snakefile=REPO / "Snakefile", workdir=workdir,
                          resource_settings=ResourceSettings(cores=1),
                          config_settings=ConfigSettings(configfiles=[workdir / "config/config.yaml",
                                                                      configfile]),
                          deployment_settings=DeploymentSettings())
        wf.dag(DAGSettings(targets=set()))
        workflow = wf._workflow                          # the DAG without executing: as --dag does
        workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        workflow._build_dag()
        return list(workflow.dag.jobs)


@pytest.fixture(scope="module")
def jobs(tmp_path_factory):
    return build_jobs(tmp_path_factory.mktemp("signatures"))


def script_of(job):
    return Path(job.rule.script).name if job.rule.script else None


def resolve(dotted):
    module_name, name = dotted.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), name)


def call_problems(function, names, supplied_by_script=()):
    """Problems of calling ``function`` with the keyword ``names`` (a list: a repeat is a problem).

    ``supplied_by_script``: parameters the script fills itself when the function has them.
    """
    params = inspect.signature(function).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    problems = [f"{n!r} given twice" for n in sorted({n for n in names if names.count(n) > 1})]
    if not takes_any:
        problems += [f"{n!r} is not a parameter" for n in names if n not in named]
    required = {n for n, p in params.items() if p.default is p.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = sorted(required - set(names) - set(supplied_by_script))
    problems += [f"required {n!r} not supplied" for n in missing]
    return problems


def group_analysis_problems(job):
    """What scripts/group_analysis.py would pass to params.function that does not fit it."""
    function = resolve(job.params.function)
    names = [*job.input.keys(), *job.output.keys(), *dict(job.params.kwargs)]
    problems = call_problems(function, names, supplied_by_script=("group",))
    return [f"{job.rule.name} -> {job.params.function}: {p}" for p in problems]


def step_problems(job):
    """What scripts/step.py (or ramp_fit.py) would pass to the step that does not fit its descriptor.

    step.py: the non-``ramp`` inputs are references (``references`` of the step's descriptor),
    outputs other than ``ramp``, ``table``, ``figure`` are its ``products``; ramp_fit.py writes
    ``rate`` and ``rateints``; ``params.parameters`` are the descriptor's ``parameters``.
    """
    step = job.params.step if script_of(job) == "step.py" else "ramp_fit"
    if step not in steps.REGISTRY:
        return [f"{job.rule.name}: step {step!r} is not registered"]
    desc = steps.descriptor.get(step)
    problems = [f"reference {k!r} is not one of the step's {desc.references}"
                for k in job.input.keys() if k != "ramp" and k not in desc.references]
    if "ramp" not in job.input.keys():
        problems.append("no input named 'ramp'")
    outputs = set(job.output.keys())
    expected = ({"ramp", "table", "figure", *desc.products} if script_of(job) == "step.py"
                else {"rate", "rateints"})
    problems += [f"output {k!r} is not read by the script" for k in sorted(outputs - expected)]
    if script_of(job) == "step.py" and desc.ramp_product and "ramp" not in outputs:
        problems.append("no output named 'ramp'")
    if script_of(job) == "ramp_fit.py" and outputs != expected:
        problems.append(f"outputs {sorted(outputs)} are not rate and rateints")
    problems += [f"parameter {k!r} is not one of the step's {sorted(desc.parameters)}"
                 for k in dict(job.params.parameters) if k not in desc.parameters]
    return [f"{job.rule.name} ({step}): {p}" for p in problems]


def test_the_dag_has_every_kind_of_job(jobs):
    rules = {job.rule.name for job in jobs}
    for rule in ("jump_statistics", "dark_current_analysis", "stability", "effective_noise",
                 "noise_decomposition", "dark_reffile", "superbias_reffile", "readnoise_reffile",
                 "mask_reffile", "ccd_analysis", "dark_current", "ramp_fit"):
        assert rule in rules
    stability = [job for job in jobs if job.rule.name == "stability"]
    assert any("baseline" in job.input.keys() for job in stability)    # the optional input is covered


def test_group_analysis_rules_match_their_functions(jobs):
    checked = [job for job in jobs if script_of(job) == "group_analysis.py"]
    assert len({job.rule.name for job in checked}) >= 14
    problems = sorted({p for job in checked for p in group_analysis_problems(job)})
    assert problems == []


def test_step_rules_match_their_steps(jobs):
    checked = [job for job in jobs if script_of(job) in ("step.py", "ramp_fit.py")]
    assert {job.rule.name for job in checked} >= {"dq_init", "jump", "ramp_fit", "rscd"}
    problems = sorted({p for job in checked for p in step_problems(job)})
    assert problems == []


class Renamed:
    """A job seen through a rule whose output ``old`` is named ``new`` (the drift this test catches)."""

    def __init__(self, job, old, new):
        self._job, self.output = job, {(new if k == old else k): v for k, v in job.output.items()}
        self.rule, self.input, self.params = job.rule, job.input, job.params


def test_a_renamed_output_or_a_missing_input_is_found(jobs):
    stability = next(job for job in jobs if job.rule.name == "stability")
    name = next(iter(stability.output.keys()))
    renamed = group_analysis_problems(Renamed(stability, name, name + "_renamed"))
    assert any(f"{name + '_renamed'!r} is not a parameter" in p for p in renamed)
    assert any(f"required {name!r} not supplied" in p for p in renamed)
    mask = next(job for job in jobs if job.rule.name == "mask_reffile")
    names = [k for k in mask.input.keys() if k != "rateints_paths"] + list(mask.output.keys())
    dropped = call_problems(resolve(mask.params.function), names)
    assert dropped == ["required 'rateints_paths' not supplied"]
    assert call_problems(resolve(mask.params.function), ["rateints_paths", "rateints_paths"])[0] == \
        "'rateints_paths' given twice"


def test_parameter_dataclass_fields_are_keyword_parameters_with_their_defaults():
    from detcal.analysis import stability
    from detcal.reffiles import make_mask
    sig = inspect.signature(stability.stability_file)
    fields = {f.name: f.default for f in dataclasses.fields(stability.StabilityParameters)}
    for name, default in fields.items():
        assert sig.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert sig.parameters[name].default == default
    assert "parameters" not in sig.parameters and "gain_path" in inspect.signature(make_mask).parameters


def test_keyword_parameters_builds_one_object_and_rejects_unknown_or_doubled_names():
    @dataclasses.dataclass(frozen=True)
    class P:
        sigma: float = 3.0
        maxiters: int = 5

    @keyword_parameters(P)
    def analysis(path, out=None, parameters=None):
        return path, out, parameters

    assert analysis("a") == ("a", None, P())
    assert analysis("a", "b", maxiters=2) == ("a", "b", P(maxiters=2))
    assert analysis("a", parameters=P(sigma=5.0))[2].sigma == 5.0
    with pytest.raises(TypeError, match="sigmaa"):
        analysis("a", sigmaa=1.0)
    with pytest.raises(TypeError, match="not both"):
        analysis("a", parameters=P(), sigma=1.0)
    with pytest.raises(TypeError, match="both arguments and fields"):
        keyword_parameters(P)(lambda path, sigma=1, parameters=None: None)


#: Parameters the default config sets apart from the function's default, and why.
DELIBERATE = {"exclude_flags": "MIRI DARK keeps the groups the no-dark branch flags DO_NOT_USE",
              "jump_parameters": "the jump step's configured parameters",
              "expected": "the config's (empty) table of expected dark currents"}


def test_default_config_passes_the_parameter_dataclasses_defaults(jobs):
    """The schema's defaults and the dataclasses' defaults are one set of numbers."""
    checked = 0
    for job in jobs:
        if script_of(job) != "group_analysis.py":
            continue
        cls = getattr(resolve(job.params.function), "parameters_class", None)
        if cls is None:
            continue
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for name, value in dict(job.params.kwargs).items():
            if name in defaults and name not in DELIBERATE:
                assert value == defaults[name], (job.rule.name, name, value, defaults[name])
                checked += 1
    assert checked >= 10
