"""Only the Cython extension lives here; all metadata is in pyproject.toml.

The kernel is compiled for the baseline ISA; its SIMD variants carry per-function target
attributes and are chosen at run time, so the build never targets the build machine's own ISA
(a native-arch build would make the 'scalar' fallback crash on older CPUs).
"""

import glob
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = [] if sys.platform == "darwin" else ["-fopenmp"]

extension = Extension(
    "xnornet.kernels._xnor",
    sources=["kernels/_xnor.pyx"],
    include_dirs=["kernels"],
    depends=sorted(glob.glob("kernels/*.h")),  # the umbrella and every header it includes
    extra_compile_args=["-O3", "-ffp-contract=off", *openmp],  # no FMA: x·s + t rounds like numpy
    extra_link_args=openmp,
)

setup(ext_modules=cythonize([extension], compiler_directives={"language_level": "3"}))
