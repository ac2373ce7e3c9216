"""Python <-> R plumbing for the cross-language tests (rpy2 3.5, reticulate >= 1.41).

R runs inside the pytest process. reticulate, loaded by R's pygqa package,
attaches to this same Python, so R's layer and Python's layer share one Keras,
one backend and one set of compiled kernels: a difference between them can
only come from the R package (argument conversion, input conversion, weight
transfer, result conversion), which is what these tests are about.

Values cross the boundary as R-native types: Python floats become R doubles,
numpy arrays R arrays with the same index meaning (numpy2ri copies to
Fortran order), numpy bools R logicals. R results come back as float64 numpy
arrays.
"""

import os
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent

# R and Python run the same float32 Keras code on the same float32 inputs and
# weights (R doubles made from float32 values convert back exactly), so their
# outputs should agree bit for bit. 1e-6 absolute, for the unit-scale inputs
# and 0.3-scale weights used here, is the bound: about 10 float32 ulps
# of an O(1) output, which would still flag any conversion error (a wrong
# axis order, a float64 path, a lost mask) by orders of magnitude.
ATOL = 1e-6


class RSession:
    """The embedded R session, with bridge.R sourced into its own environment."""

    def __init__(self):
        import rpy2.robjects as ro

        # reticulate prints a banner through this hook when it loads in rpy2.
        ro.r('setHook(packageEvent("reticulate", "onLoad"), NULL, "replace")')
        from rpy2.robjects import default_converter, numpy2ri
        from rpy2.robjects.conversion import localconverter

        self.ro = ro
        self._converter = default_converter + numpy2ri.converter
        self._localconverter = localconverter
        ro.r("suppressPackageStartupMessages(library(pygqa))")
        if not ro.r("pygqa::pygqa_available()")[0]:
            reason = ro.r("tryCatch({pygqa:::pygqa_module(); ''}, error = conditionMessage)")
            raise RuntimeError(f"the R package pygqa cannot use Python: {reason[0]}")
        backend = ro.r("keras$backend$backend()")[0]
        expected = os.environ.get("KERAS_BACKEND", "tensorflow")
        if backend != expected:
            raise RuntimeError(f"R's Keras runs {backend}, the test process wants {expected}")
        self.env = ro.r("new.env(parent = globalenv())")
        ro.r["sys.source"](str(HERE / "bridge.R"), envir=self.env)

    def fn(self, name):
        """An R function from bridge.R, called with Python values, returning Python values."""
        r_function = self.env.find(name)

        def call(*args, **kwargs):
            r_args = [to_r(a, self) for a in args]
            r_kwargs = {k: to_r(v, self) for k, v in kwargs.items()}
            return from_r(r_function(*r_args, **r_kwargs), self)

        return call

    def eval(self, code):
        """Evaluates R code in the bridge's environment; returns Python values."""
        return from_r(self.ro.r["eval"](self.ro.r["parse"](text=code), envir=self.env), self)

    def raw(self, code):
        """Evaluates R code; returns the rpy2 object unconverted."""
        return self.ro.r["eval"](self.ro.r["parse"](text=code), envir=self.env)


def to_r(value, session):
    """Python value -> R value: lists/tuples to unnamed R lists, dicts to named lists."""
    ro = session.ro
    if value is None:
        return ro.NULL
    if isinstance(value, dict):
        return ro.vectors.ListVector({k: to_r(v, session) for k, v in value.items()}) \
            if value else ro.r("list()")
    if isinstance(value, (list, tuple)):
        items = [to_r(v, session) for v in value]
        return ro.r["list"](*items)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            value = value.astype(np.float64)
        with session._localconverter(session._converter):
            return ro.conversion.get_conversion().py2rpy(value)
    if isinstance(value, (bool, np.bool_)):
        return ro.BoolVector([bool(value)])
    if isinstance(value, (int, float, np.integer, np.floating)):
        return ro.FloatVector([float(value)])  # R-native: sizes are doubles
    if isinstance(value, str):
        return ro.StrVector([value])
    return value  # already an R object


def from_r(value, session):
    """R value -> Python: named lists to dicts, unnamed lists to lists, arrays to numpy."""
    import rpy2.rinterface as ri

    ro = session.ro
    if value is ro.NULL or isinstance(value, ri.NULLType):
        return None
    if isinstance(value, (ri.ListSexpVector, ro.vectors.ListVector)):
        items = [from_r(v, session) for v in value]
        names = ro.r["names"](value)
        if names is ro.NULL or isinstance(names, ri.NULLType):
            return items
        return dict(zip(list(names), items))
    if isinstance(value, (ri.FloatSexpVector, ri.IntSexpVector, ri.BoolSexpVector,
                          ri.StrSexpVector)):
        with session._localconverter(session._converter):
            array = np.asarray(ro.conversion.get_conversion().rpy2py(value))
        has_dim = ro.r["dim"](value) is not ro.NULL and not isinstance(
            ro.r["dim"](value), ri.NULLType)
        if not has_dim and array.shape == (1,):
            return array[0].item() if hasattr(array[0], "item") else array[0]
        return array
    return value


def max_abs_diff(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


# The largest R-vs-Python difference seen in this process, for the summary line.
LARGEST = {"diff": 0.0, "where": None}


def record(diff, where):
    if diff >= LARGEST["diff"]:
        LARGEST.update(diff=diff, where=where)
    return diff
