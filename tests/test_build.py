"""The two builds: pure Python by default, the compiled accelerator on request (setup.py).

scripts/test runs the suite twice and says which build each run must be
testing: ``BLACKHOLE_EXPECT_COMPILED=0`` for the editable pure install in
.venv, ``=1`` for the compiled install in .venv-mypyc. A run that tests the
other build than it claims fails here, so a compiled run can never pass on
the pure modules (a stale venv, src/ on the path) and a pure run never on
extensions left in src/.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXPECT = os.environ.get("BLACKHOLE_EXPECT_COMPILED")
_ACCELERATOR = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["blackhole"]
# Compiled by mypyc, then by Cython (setup.py): one switch builds both.
MODULES: list[str] = _ACCELERATOR["mypyc"]["modules"] + _ACCELERATOR["cython"]["modules"]
NATIVE = tuple(importlib.machinery.EXTENSION_SUFFIXES)
# What a child process (a worker, `python -m blackhole`) imports: it runs this
# interpreter, away from the checkout.
PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    print(importlib.import_module(name).__file__)
"""

needs_expectation = pytest.mark.skipif(
    EXPECT not in ("0", "1"), reason="BLACKHOLE_EXPECT_COMPILED unset (set by scripts/test)"
)


def test_every_listed_module_exists() -> None:
    for name in MODULES:
        assert (ROOT / "src" / Path(*name.split("."))).with_suffix(".py").is_file(), name


@needs_expectation
@pytest.mark.parametrize("name", MODULES)
def test_module_is_built_as_expected(name: str) -> None:
    path = importlib.import_module(name).__file__
    assert path is not None
    assert path.endswith(NATIVE) is (EXPECT == "1"), path


@needs_expectation
def test_children_import_the_same_build(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *MODULES],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    paths = result.stdout.split()
    assert len(paths) == len(MODULES)
    assert all(path.endswith(NATIVE) is (EXPECT == "1") for path in paths), paths


@needs_expectation
def test_the_run_tests_the_install_it_claims() -> None:
    # The pure run, the editable install of src/; the compiled run, its
    # installed package (src/ holds only the pure modules).
    import blackhole

    assert Path(blackhole.__file__).is_relative_to(ROOT / "src") is (EXPECT == "0")


def _checkout_copy(tmp_path: Path) -> Path:
    """What pip builds from: the package's files, away from the worktree's build/."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(
        ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    return tree


def test_default_build_is_pure_and_needs_no_compiler(tmp_path: Path) -> None:
    tree = _checkout_copy(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "BLACKHOLE_MYPYC"}
    env["CC"] = env["CXX"] = "/bin/false"  # any attempt to compile fails the build
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(tree)],
        env=env,
        check=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("blackhole-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "blackhole/protocol/core.py" in names
    assert not [name for name in names if name.endswith((".so", ".pyd", ".c"))]


@pytest.mark.parametrize(
    ("value", "argv", "message"),
    [
        ("yes", ["--name"], "BLACKHOLE_MYPYC must be 1"),
        ("1", ["editable_wheel"], "builds no editable install"),
    ],
)
def test_setup_refuses_what_it_cannot_build(value: str, argv: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "setup.py"), *argv],
        check=False,
        cwd=ROOT,
        env={**os.environ, "BLACKHOLE_MYPYC": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
