"""Build Blackhole: pure Python by default, its hot path compiled on request.

Everything about the package is in pyproject.toml; this file only adds the
optional accelerator. ``pip install .`` (and ``pip install -e .``) builds the
pure-Python package and needs no C compiler. With ``BLACKHOLE_MYPYC=1`` in
the environment at build time, the modules listed in pyproject.toml under
``[tool.blackhole.mypyc]`` are compiled to C extensions by mypyc (which comes
with mypy), and those under ``[tool.blackhole.cython]`` by Cython, typed by
the ``.pxd`` file next to each; a C compiler and the Python headers are
needed:

    BLACKHOLE_MYPYC=1 pip install .

mypy and Cython are build requirements of the compiled build only, so that
the pure build's requirements stay setuptools and wheel. In pip's isolated
build environment they are asked for through ``setup_requires``, which
setuptools' PEP 517 backend reports to pip as extra build requirements
(``get_requires_for_build_wheel``); with ``--no-build-isolation`` the ones
already installed are used. The compiled modules need neither at run time.

The compiled build is never editable: an editable install would build the
extensions next to the sources in src/, where every checkout's pure
environment would import them too.
"""

from __future__ import annotations

import os
import shutil
import sys
import tomllib
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
# The oldest mypy and Cython this build has been tested with: older ones may
# reject the code or compile it differently (observe/meter.pxd cimports
# Cython's cpython.time).
MYPY = "mypy>=2.4"
CYTHON = "Cython>=3.3"
BUILD = ROOT / "build" / "mypyc"


def compiled_modules(compiler: str) -> list[str]:
    """The source files of the modules ``compiler`` compiles, from pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules = config["tool"]["blackhole"][compiler]["modules"]
    return [str(Path("src", *name.split(".")).with_suffix(".py")) for name in modules]


def wanted() -> bool:
    value = os.environ.get("BLACKHOLE_MYPYC", "")
    if value not in ("", "0", "1"):
        sys.exit(f"BLACKHOLE_MYPYC must be 1 (compile) or 0/unset (pure Python), not {value!r}")
    return value == "1"


if not wanted():
    setup()
elif "editable_wheel" in sys.argv:
    sys.exit("BLACKHOLE_MYPYC=1 builds no editable install: use `pip install .` (not -e)")
else:
    try:
        from Cython.Build import cythonize
        from mypyc.build import mypycify
    except ImportError:
        # pip's isolated build environment, on its first question
        # (get_requires_for_build_wheel): setuptools answers it with this.
        setup(setup_requires=[MYPY, CYTHON])
    else:
        # A build directory of its own, emptied of the last build's output:
        # setuptools packs whatever it finds there, so a module dropped from
        # the list (or the pure build, in build/) would otherwise ship a stale
        # extension.
        for stale in BUILD.glob("lib.*"):
            shutil.rmtree(stale)
        # One shared library for all of them (calls between compiled modules
        # stay native), named after the package.
        extensions = mypycify(
            ["--config-file", str(ROOT / "pyproject.toml"), *compiled_modules("mypyc")],
            opt_level="3",
            group_name="blackhole",
            target_dir=str(BUILD / "c"),
        )
        # Types from the .pxd files only: the modules' annotations are
        # Python's (an ``int`` there is unbounded, a C integer is not).
        extensions += cythonize(
            compiled_modules("cython"),
            build_dir=str(BUILD / "cython"),
            compiler_directives={"language_level": 3, "annotation_typing": False},
            quiet=True,
        )
        setup(ext_modules=extensions, options={"build": {"build_base": str(BUILD)}})
