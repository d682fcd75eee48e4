"""Analysis parameters as frozen dataclasses, passed to file-level functions as keywords.

A file-level analysis or reference-file builder (``detcal.analysis.*_file(s)``,
``detcal.reffiles.make_*``) is called by ``workflow/scripts/group_analysis.py`` with the rule's
named inputs and outputs and the configuration's parameters as keyword arguments. Its analysis
parameters (thresholds, clipping, significance levels) are the fields of one frozen dataclass per
analysis, which holds their defaults and units; :func:`keyword_parameters` makes the dataclass's
fields keyword-only parameters of the function, so that

* ``inspect.signature`` shows every name the function takes, with its default (for readers and
  for ``tests/test_rule_signatures.py``, which checks every rule against it without a run);
* an unknown keyword is a ``TypeError`` naming it, as for an ordinary function;
* the function receives one ``parameters`` object (the dataclass), not a long argument list.
"""

import dataclasses
import functools
import inspect

__all__ = ["keyword_parameters"]


def keyword_parameters(cls):
    """Decorator: the fields of the frozen dataclass ``cls`` become keyword-only parameters.

    The decorated function is written with a last parameter ``parameters`` (an instance of
    ``cls``); callers pass the fields by name (``hot_threshold=0.5``) or a whole ``parameters=``
    object (not both). Field defaults are the function's defaults.
    """
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}

    def wrap(func):
        sig = inspect.signature(func)
        if "parameters" not in sig.parameters:
            raise TypeError(f"{func.__qualname__} needs a 'parameters' argument for {cls.__name__}")
        own = [p for name, p in sig.parameters.items() if name != "parameters"]
        clash = names & {p.name for p in own}
        if clash:
            raise TypeError(f"{func.__qualname__}: {sorted(clash)} are both arguments and fields of "
                            f"{cls.__name__}")
        extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY,
                                   default=f.default if f.default is not dataclasses.MISSING
                                   else f.default_factory())
                 for f in fields]
        public = sig.replace(parameters=[*own, *extra])

        @functools.wraps(func)
        def call(*args, parameters=None, **kwargs):
            given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            if parameters is not None and given:
                raise TypeError(f"{func.__qualname__}: pass either parameters= or {sorted(given)}, not both")
            public.bind_partial(*args, **kwargs)       # unknown names fail here, as for a plain function
            return func(*args, parameters=parameters if parameters is not None else cls(**given), **kwargs)

        call.__signature__ = public
        call.parameters_class = cls
        return call

    return wrap
