"""Run one per-group analysis or reference-file builder of detcal.

The rule names its inputs and outputs after the function's arguments, so this adapter only
moves paths: params.function is the dotted name, params.kwargs the analysis parameters.
"""
import importlib
import inspect

from detcal import runner

module_name, function_name = snakemake.params.function.rsplit(".", 1)
function = getattr(importlib.import_module(module_name), function_name)
with runner.logged(snakemake.log[0], function_name):
    kwargs = {name: value if isinstance(value, str) else list(value)
              for name, value in snakemake.input.items()}
    kwargs.update(snakemake.output.items())
    kwargs.update(snakemake.params.kwargs)
    if "group" in inspect.signature(function).parameters:
        kwargs["group"] = snakemake.wildcards.group
    function(**kwargs)
