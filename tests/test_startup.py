"""A job's start-up (issue 15): what the workflow scripts import before their work.

Every Snakemake job is a fresh Python process. matplotlib and pandas cost ~1 s of a job's
start-up (benchmarks/README.md, "Job start-up"), so the detector1 jobs import neither until a
figure is drawn, and write their sample tables without pandas, byte for byte as pandas did.
"""

import ast
import json
import pathlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from detcal import plots, simulate, tables

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "workflow" / "scripts"


def _script_imports(name):
    """The import statements of workflow/scripts/<name>.py (what its job imports before its work)."""
    tree = ast.parse((SCRIPTS / f"{name}.py").read_text())
    return [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]


def _fresh_modules(code):
    """Run ``code`` in a fresh interpreter; return which of matplotlib, pandas and pyplot it imported
    and the matplotlib backend (None without matplotlib)."""
    probe = code + "\n".join([
        "", "import json, sys",
        "mods = [m for m in ('matplotlib', 'matplotlib.pyplot', 'pandas') if m in sys.modules]",
        "backend = sys.modules['matplotlib'].get_backend() if 'matplotlib' in sys.modules else None",
        "print(json.dumps({'modules': mods, 'backend': backend}))"])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_detector1_scripts_import_neither_matplotlib_nor_pandas():
    code = "\n".join(sorted({line for name in ("chain", "step", "ramp_fit") for line in _script_imports(name)}))
    assert "from detcal import runner" in code
    assert _fresh_modules(code)["modules"] == []


def test_inventory_and_summary_scripts_do_not_import_matplotlib():
    code = "\n".join(sorted({line for name in ("inventory", "summary", "group_summary")
                             for line in _script_imports(name)}))
    assert not {"matplotlib", "matplotlib.pyplot"} & set(_fresh_modules(code)["modules"])


def test_the_workflow_parse_imports_no_plotting_nor_simulation_library():
    """Every Snakemake start (each SLURM job's too) parses the Snakefile, which imports detcal to
    plan the files; nothing is drawn or simulated there. Every detcal import of the workflow's
    files counts, also those made only when needed (inside a function or a branch: the demo's
    planner, the CCD branch's, the config and raw-file checks)."""
    lines = sorted({line.strip() for path in [ROOT / "Snakefile", *(ROOT / "workflow" / "rules").glob("*.smk")]
                    for line in path.read_text().splitlines()
                    if line.strip().startswith(("from detcal", "import detcal"))})
    assert any("demo" in line for line in lines) and any("simulate" in line for line in lines)
    loaded = _fresh_modules("\n".join(lines) + "\nimport sys\nfor m in ('scipy', 'astropy.table'):\n"
                            "    assert m not in sys.modules, m")
    assert not {"matplotlib", "matplotlib.pyplot"} & set(loaded["modules"])


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    spec = {"name": "NRCA1", "preset": "nircam_sw", "size": 32, "ngroups": 4, "nints": 1, "nexposures": 1}
    return simulate.write_detector_set(spec, str(tmp_path_factory.mktemp("set")), seed=7)


def test_a_step_job_draws_its_figure_with_agg_and_without_pandas_as_an_eager_process_does(tiny_set, tmp_path):
    """The figure and table of a step job that imported nothing beforehand are byte for byte those
    of this process, where pyplot and pandas were imported first."""
    uncal, refs = tiny_set["uncal"][0], tiny_set["references"]

    def call(out):
        return (f"runner.run_step_file('superbias', {uncal!r}, {{'superbias': {refs['superbias']!r}}}, "
                f"{str(out / 'ramp.fits')!r}, pixels=[(5, 6), (20, 9), (99, 99)], "
                f"table={str(out / 'samples.tsv')!r}, figure={str(out / 'samples.png')!r}, exposure='e1')")

    lazy, eager = tmp_path / "lazy", tmp_path / "eager"
    lazy.mkdir()
    eager.mkdir()
    fresh = _fresh_modules("from detcal import runner\n" + call(lazy))
    assert "pandas" not in fresh["modules"] and "matplotlib.pyplot" in fresh["modules"]
    assert fresh["backend"].lower() == "agg"

    import matplotlib.pyplot as plt

    from detcal import runner
    eval(call(eager), {"runner": runner})
    assert (lazy / "samples.tsv").read_bytes() == (eager / "samples.tsv").read_bytes()
    assert (lazy / "samples.png").read_bytes() == (eager / "samples.png").read_bytes()
    table = pd.read_csv(lazy / "samples.tsv", sep="\t")
    assert list(table.columns) == list(plots.STEP_COLUMNS) and len(table) == 2 * 4
    assert plt.imread(lazy / "samples.png").shape[:2] == (2 * 3 * 90, 2 * 5.5 * 90)   # 2 x 2 panels at 90 dpi


def test_the_step_table_is_written_as_pandas_writes_its_dataframe(tmp_path):
    rng = np.random.default_rng(5)
    before = np.concatenate([rng.normal(0, 1, 40) * 10.0 ** rng.integers(-20, 20, 40),
                             [0.0, -0.0, np.inf, -np.inf, np.nan, 1e16, 1e-5, 0.1, 123456789.0, 2.5]])
    before = before.reshape(2, 1, 25)
    after = before[:, :, ::-1].copy()
    after[0, 0, :3] = [0.0, np.nan, np.float32(0.1)]
    groupdq = rng.integers(0, 255, before.shape).astype(np.float64)
    for step in ("rscd", "refpix"):
        table = plots.step_table(step, before, after, groupdq, [(3, 4), (7, 1)])
        tables.write_tsv(table, tmp_path / "lazy.tsv")
        pd.DataFrame(table).to_csv(tmp_path / "pandas.tsv", sep="\t", index=False)
        assert (tmp_path / "lazy.tsv").read_bytes() == (tmp_path / "pandas.tsv").read_bytes()
    columns = {"n": np.arange(3), "ok": np.array([True, False, True]), "x": np.array([1.5, np.nan, 3], np.float32)}
    tables.write_tsv(columns, tmp_path / "lazy.tsv")
    pd.DataFrame(columns).to_csv(tmp_path / "pandas.tsv", sep="\t", index=False)
    assert (tmp_path / "lazy.tsv").read_bytes() == (tmp_path / "pandas.tsv").read_bytes()
    empty = plots.step_table("rscd", before[:0], after[:0], groupdq[:0], [])
    tables.write_tsv(empty, tmp_path / "empty.tsv")
    assert (tmp_path / "empty.tsv").read_text() == "\t".join(plots.STEP_COLUMNS + ("ratio",)) + "\n"


def test_the_step_figure_is_the_same_from_the_columns_and_from_their_dataframe(tmp_path):
    rng = np.random.default_rng(2)
    before = rng.normal(100, 5, (2, 3, 6))
    after = before - rng.normal(3, 1, before.shape)
    groupdq = (rng.random(before.shape) < 0.3) * 4.0
    table = plots.step_table("rscd", before, after, groupdq, [(3, 4), (1, 2)])
    plots.plot_step(table, "rscd", "e1", str(tmp_path / "columns.png"))
    plots.plot_step(pd.DataFrame(table), "rscd", "e1", str(tmp_path / "frame.png"))
    assert (tmp_path / "columns.png").read_bytes() == (tmp_path / "frame.png").read_bytes()
