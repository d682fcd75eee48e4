"""Step descriptors: what each detector1 step is, declared once, in the step's own module.

Every step module of :mod:`detcal.steps` declares ``DESCRIPTOR = Step(...)`` next to its ``run``.
:func:`register` collects them (``detcal.steps`` registers every module of the package that has a
``DESCRIPTOR``, then the modules named in the environment variable ``DETCAL_STEP_MODULES``), and
everything that used to be a hand-kept table is derived from the registry:

derived table or block                         from the descriptors
---------------------------------------------  -------------------------------------------------
``detcal.steps.REGISTRY`` (name -> module)     :data:`MODULES`
``detcal.io.REFTYPES``, ``LAYOUT``,            :attr:`Step.reference_types` (the types a step
``DATAMODL``, ``MAIN`` (types a step brings)   brings; the built-in types and the tables are
                                               :mod:`detcal.reftypes`', which io re-exports)
``detcal.pipeline.ORDER`` (per family)         :attr:`Step.position`
``detcal.pipeline.REFERENCES``,                :attr:`Step.references`,
``OPTIONAL_REFERENCES``                        :attr:`Step.optional_references`
``detcal.pipeline.SUFFIX``, ``RAMP_STEPS``     :attr:`Step.suffix` of steps with a ramp product
``detcal.keywords.STEP`` (per step),           :attr:`Step.keywords` (added to keywords.BASE),
``CAL_STEP``                                   :attr:`Step.cal_step`
config schema ``steps``, ``parameters``,       :func:`schema_blocks`, inserted by
``keep``, ``references.<DET>.steps``           :func:`detcal.validate.config_schema`
workflow rules                                 one per ramp step (``workflow/rules/detector1.smk``;
                                               memory: ``ramp_step_mem_mb``), further outputs
                                               from :attr:`Step.products`

So adding a step is one module: ``run(ramp, refs, **params)`` plus its ``DESCRIPTOR``. A step that
is not implemented has no module, so it is not offered: switching it on is a config error (the
schema's ``steps`` block only lists registered steps).

The uniform step result: :meth:`Step.apply` calls the module's ``run`` and returns a
:class:`StepResult` ``(ramp, products)`` for every step. ``run`` itself returns the ramp, followed
by the products the descriptor declares that are switched on (``dark_current`` with
``dark_output``: ``(ramp, dark)``); a step whose product is not a ramp (``ramp_fit``) returns its
products only (``(rate, rateints)``). The module's ``run`` keeps that array-level contract for
callers that use one step directly.
"""

import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass, field

from .. import reftypes  # detcal.io's tables of reference types, without astropy

#: Instrument families a step can belong to (detcal.geometry.family).
FAMILIES = ("NIR", "MIRI")

#: Environment variable naming extra step modules (os.pathsep-separated dotted names or .py paths).
ENV_MODULES = "DETCAL_STEP_MODULES"

#: JSON-schema type of a parameter, from the type of its default.
_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"))


@dataclass(frozen=True)
class Param:
    """A step parameter as the config offers it (``parameters: {step: {name: value}}``).

    default : the value used when the config does not set it (JSON-schema ``default``)
    description : one line for the schema and config/README.md, with units in brackets
    constraints : further JSON-schema keywords, e.g. ``{"minimum": 0}``
    type : JSON-schema type; empty = from the default (bool, int, float, str)
    """

    default: object
    description: str
    constraints: dict = field(default_factory=dict)
    type: str = ""

    def schema(self):
        """The parameter's JSON-schema block."""
        kind = self.type or next(name for cls, name in _JSON_TYPES if isinstance(self.default, cls))
        return {"type": kind, **self.constraints, "default": self.default, "description": self.description}


@dataclass(frozen=True)
class Product:
    """A further product of a step, written next to (or instead of) its ramp.

    kind : how it is written (detcal.runner): ``'reference'`` (a :class:`detcal.io.Reference`),
        ``'rate'`` or ``'rateints'`` (dicts of detcal.steps.ramp_fit.fit_ramps)
    suffix : file-name suffix of the product (``{exposure}_{suffix}.fits``)
    switch : the boolean parameter that asks for it (None: always made)
    """

    kind: str
    suffix: str
    switch: str = None


@dataclass(frozen=True)
class ReferenceType:
    """A reference-file type that a step brings and detcal.io does not know yet.

    reftype : the REFTYPE keyword (upper case)
    layout : {extension: (dtype, ndim or tuple of ndims, required)}, as :data:`detcal.io.LAYOUT`
    datamodl : the stdatamodels class name written as DATAMODL
    description : one line for the schema's ``references.<DETECTOR>`` block, with units
    main : the extension whose last two axes are the image (:data:`detcal.io.MAIN`)
    """

    reftype: str
    layout: dict
    datamodl: str
    description: str
    main: str = "SCI"


@dataclass(frozen=True)
class Step:
    """Everything the package and the workflow know about one detector1 step.

    name : step name (config key under ``steps:`` and ``parameters:``, rule name)
    description : one line for the schema's ``steps`` block
    position : {family: number}: where the step sits in each family's chain (smaller first; the
        built-in steps use multiples of 10, so a new step takes a number between its neighbours);
        a family not listed does not run the step
    cal_step : the S_* status keyword jwst writes for the step
    suffix : file suffix of the step's ramp product as jwst names it (``superbiasstep``)
    references : config keys of the reference files the step reads (keys of detcal.io.REFTYPES,
        or of ``reference_types``)
    optional_references : those among ``references`` it can run without
    keywords : primary-header keywords it needs beyond detcal.keywords.BASE
    parameters : {name: Param}: the parameters the config offers (keyword arguments of ``run``)
    default_on : whether the step runs when the config does not say
    ramp_product : False for a step whose product is not a ramp (ramp_fit: rate/rateints)
    products : {name: Product}: further products (see :class:`Product`)
    reference_types : {config key: ReferenceType}: reference types the step brings; registering
        the step adds them to detcal.io's tables (REFTYPES, LAYOUT, DATAMODL, MAIN) and to the
        schema's reference block, so reading, checking and writing them needs nothing else
    """

    name: str
    description: str
    position: dict
    cal_step: str
    suffix: str = ""
    references: tuple = ()
    optional_references: tuple = ()
    keywords: tuple = ()
    parameters: dict = field(default_factory=dict)
    default_on: bool = True
    ramp_product: bool = True
    products: dict = field(default_factory=dict)
    reference_types: dict = field(default_factory=dict)

    def apply(self, ramp, refs, **params):
        """Run the step's module on ``ramp``; return a :class:`StepResult` (see the module doc)."""
        result = MODULES[self.name].run(ramp, refs, **params)
        active = [name for name, prod in self.products.items()
                  if prod.switch is None or params.get(prod.switch, self._default(prod.switch))]
        parts = list(result) if isinstance(result, tuple) else [result]
        if self.ramp_product:
            ramp, parts = parts[0], parts[1:]
        if len(parts) != len(active):
            raise TypeError(f"step {self.name}: run returned {len(parts)} products, its descriptor "
                            f"declares {active} for these parameters")
        return StepResult(ramp, dict(zip(active, parts)))

    def _default(self, name):
        param = self.parameters.get(name)
        return param.default if param is not None else False


@dataclass
class StepResult:
    """What every step gives back: the ramp (the input ramp for a step without a ramp product)
    and its further products by name (:attr:`Step.products`)."""

    ramp: object
    products: dict = field(default_factory=dict)


#: name -> Step, in registration order.
DESCRIPTORS = {}
#: name -> module (``detcal.steps.REGISTRY`` is this dict).
MODULES = {}


def register(module):
    """Add a step module (a module object, a dotted name or a ``.py`` path) to the registry.

    Checks the descriptor: a unique name (re-registering the same module is a no-op), a known
    family and a free position in it, reference keys detcal.io knows, optional references among
    the references, parameters that ``run`` accepts. Returns the descriptor.
    """
    module = _load(module)
    desc = getattr(module, "DESCRIPTOR", None)
    if not isinstance(desc, Step):
        raise TypeError(f"{module.__name__} has no DESCRIPTOR = detcal.steps.descriptor.Step(...)")
    if not callable(getattr(module, "run", None)):
        raise TypeError(f"step module {module.__name__} has no run(ramp, refs, **params)")
    old = MODULES.get(desc.name)
    if old is not None:
        if old is module or getattr(old, "__file__", None) == getattr(module, "__file__", 0):
            return DESCRIPTORS[desc.name]
        raise ValueError(f"step {desc.name!r} of {module.__name__} is already registered by {old.__name__}")
    _check(desc, module)
    _add_reference_types(desc)
    DESCRIPTORS[desc.name] = desc
    MODULES[desc.name] = module
    return desc


def _add_reference_types(desc):
    for key, ref in desc.reference_types.items():
        reftypes.REFTYPES[key] = ref.reftype
        reftypes.LAYOUT[ref.reftype] = ref.layout
        reftypes.DATAMODL[ref.reftype] = ref.datamodl
        if ref.main != "SCI":
            reftypes.MAIN[ref.reftype] = ref.main


def unregister(name):
    """Remove step ``name`` (and the reference types it brought) from the registry: a temporary
    step registered by a test."""
    desc = DESCRIPTORS.pop(name, None)
    MODULES.pop(name, None)
    for key, ref in (desc.reference_types if desc else {}).items():
        reftypes.REFTYPES.pop(key, None)
        for table in (reftypes.LAYOUT, reftypes.DATAMODL, reftypes.MAIN):
            table.pop(ref.reftype, None)


def _load(module):
    if not isinstance(module, str):
        return module
    if module.endswith(".py"):
        path = os.path.abspath(module)
        name = f"detcal_step_{os.path.splitext(os.path.basename(path))[0]}"
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None:
            raise ImportError(f"{path}: not a Python module")
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        spec.loader.exec_module(loaded)
        return loaded
    return importlib.import_module(module)


def _check(desc, module):
    where = f"step {desc.name!r} ({module.__name__})"
    if not desc.position or set(desc.position) - set(FAMILIES):
        raise ValueError(f"{where}: position must map families {FAMILIES} to numbers, got {desc.position}")
    for fam, pos in desc.position.items():
        taken = [d.name for d in DESCRIPTORS.values() if d.position.get(fam) == pos]
        if taken:
            raise ValueError(f"{where}: position {pos} in {fam} is taken by {taken[0]}")
    clash = [k for k, ref in desc.reference_types.items()
             if k in reftypes.REFTYPES or ref.reftype in reftypes.REFTYPES.values()]
    if clash:
        raise ValueError(f"{where}: reference types {clash} exist already (detcal.io.REFTYPES)")
    unknown = [k for k in desc.references if k not in reftypes.REFTYPES and k not in desc.reference_types]
    if unknown:
        raise ValueError(f"{where}: unknown reference keys {unknown}; known: {sorted(reftypes.REFTYPES)} "
                         "(a new type goes in the descriptor's reference_types)")
    if set(desc.optional_references) - set(desc.references):
        raise ValueError(f"{where}: optional references {desc.optional_references} are not among "
                         f"{desc.references}")
    if desc.ramp_product and not desc.suffix:
        raise ValueError(f"{where}: a step with a ramp product needs its jwst suffix")
    params = inspect.signature(module.run).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    missing = [p for p in desc.parameters if p not in params and not takes_any]
    if missing:
        raise ValueError(f"{where}: run() does not accept the parameters {missing}")


def load_environment():
    """Register the modules named in :data:`ENV_MODULES` (nothing when it is unset)."""
    for entry in filter(None, os.environ.get(ENV_MODULES, "").split(os.pathsep)):
        register(entry.strip())


def get(name):
    """The descriptor of step ``name``; KeyError naming the registered steps otherwise."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise KeyError(f"unknown step {name!r}; registered: {', '.join(DESCRIPTORS)}") from None


# ---- derived tables ---------------------------------------------------------------------------
def order(fam):
    """Step names of family ``fam`` in chain order."""
    ranked = sorted((d.position[fam], d.name) for d in DESCRIPTORS.values() if fam in d.position)
    return tuple(name for _, name in ranked)


def names():
    """Every registered step, the NIR order first, then the steps of other families."""
    return tuple(dict.fromkeys(n for fam in FAMILIES for n in order(fam)))


def ramp_steps():
    """Steps whose product is a ramp, in :func:`names` order."""
    return tuple(n for n in names() if DESCRIPTORS[n].ramp_product)


def schema_blocks():
    """The config-schema blocks derived from the descriptors.

    Returns {"steps": ..., "parameters": ..., "keep": ..., "reference_steps": ...,
    "reference_types": ...}: the ``steps`` on/off block, the ``parameters`` block (one object per
    step with parameters, every parameter with its default), the ``keep`` item enum (the ramp
    steps), the properties of ``references.<DETECTOR>.steps`` (steps that read references) and
    of ``references.<DETECTOR>`` for the reference types steps bring.
    """
    steps = {n: {"type": "boolean", "default": DESCRIPTORS[n].default_on,
                 "description": DESCRIPTORS[n].description} for n in names()}
    parameters = {}
    for n in names():
        desc = DESCRIPTORS[n]
        if desc.parameters:
            parameters[n] = {"type": "object", "additionalProperties": False, "default": {},
                             "properties": {p: v.schema() for p, v in desc.parameters.items()}}
    return {
        "steps": steps,
        "parameters": parameters,
        "keep": list(ramp_steps()),
        "reference_steps": {n: {"$ref": "#/definitions/step_references"}
                            for n in names() if DESCRIPTORS[n].references},
        "reference_types": {key: {"type": "string", "description": ref.description}
                            for n in names() for key, ref in DESCRIPTORS[n].reference_types.items()},
    }
