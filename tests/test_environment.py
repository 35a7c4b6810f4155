"""pyproject.toml, requirements.lock and environment.yml must describe the same environment, and an
install made through the lock must be exactly the lock."""

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import pip._vendor.tomli as tomllib


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _direct_requirements():
    """Every requirement of the `.[dev]` install named in pyproject.toml (vitlab's own extras left out)."""
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != "vitlab"]


def parse_lock(text: str) -> dict:
    """{canonical name: (version, [what it is there for])} from a `uv pip compile` lock file."""
    pins, current = {}, None
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if pin:
            current = canonicalize_name(pin.group(1))
            pins[current] = (pin.group(2), [])
            continue
        via = re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][^\s]*(?: \(pyproject\.toml\))?)\s*$", line)
        if via and current and via.group(1) != "via":
            pins[current][1].append(via.group(1))
    return pins


def _lock():
    return parse_lock((ROOT / "requirements.lock").read_text())


def test_lock_parser_reads_pins_and_their_reasons():
    text = ("# header\nalpha==1.2\n    # via vitlab (pyproject.toml)\nbeta-pkg==0.3 ; sys_platform == 'linux'\n"
            "    # via\n    #   alpha\n    #   vitlab (pyproject.toml)\n")
    assert parse_lock(text) == {"alpha": ("1.2", ["vitlab (pyproject.toml)"]),
                                "beta-pkg": ("0.3", ["alpha", "vitlab (pyproject.toml)"])}


def test_every_pyproject_dependency_is_pinned_in_the_lock_within_its_range():
    lock = _lock()
    for req in _direct_requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        version = lock[name][0]
        assert req.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {req.name}=={version}, outside pyproject.toml's {req}: run `make lock`"


def test_the_lock_holds_nothing_stale():
    """Every pin is there for a pyproject.toml dependency or for another pin, and every pin that
    claims pyproject.toml as its reason is still one of its dependencies."""
    lock = _lock()
    direct = {canonicalize_name(r.name) for r in _direct_requirements()}
    for name, (version, reasons) in lock.items():
        assert reasons, f"{name}=={version} has no reason to be in requirements.lock"
        for reason in reasons:
            if reason.endswith("(pyproject.toml)"):
                assert name in direct, f"{name} is no longer in pyproject.toml: run `make lock`"
            else:
                assert canonicalize_name(reason) in lock, f"{name} is there for {reason}, which is not pinned"


def test_an_install_through_the_lock_is_exactly_the_lock():
    """Every distribution installed beside vitlab is pinned, at the installed version (only when
    this environment was made by `make install` through the lock)."""
    stamp = Path(sys.prefix) / ".vitlab-installed"
    if not stamp.exists() or stamp.read_text().strip() != "requirements.lock":
        pytest.skip("this environment was not installed through requirements.lock (make install)")
    lock = _lock()
    tools = {"vitlab", "pip", "setuptools", "wheel", "uv"}  # the installer's own, and vitlab itself
    unpinned, different = [], []
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in tools:
            continue
        if name not in lock:
            unpinned.append(f"{name}=={dist.version}")
        elif lock[name][0] != dist.version:
            different.append(f"{name}: installed {dist.version}, locked {lock[name][0]}")
    assert unpinned == [] and different == []


def test_environment_yml_installs_the_dev_extra_through_the_lock():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*pip\s*$", text, re.M), "environment.yml must list pip"
    assert re.search(r"^\s*-\s*-c requirements\.lock\s*$", text, re.M), "environment.yml must use the lock"
    assert re.search(r"^\s*-\s*-e \.\[dev\]\s*$", text, re.M), "environment.yml must install `-e .[dev]`"
    lock_python = re.search(r"^LOCK_PYTHON\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    py = re.search(r"^\s*-\s*python\s*=\s*([\d.]+)\s*$", text, re.M)
    assert py and py.group(1) == lock_python, "environment.yml's python must be the one the lock was made for"
    assert Requirement(f"python{_pyproject()['project']['requires-python']}").specifier.contains(lock_python)


def test_environment_yml_pins_no_package_of_its_own():
    """Every package comes from pyproject.toml; a conda-only dependency would drift."""
    text = (ROOT / "environment.yml").read_text()
    deps = re.findall(r"^\s*-\s*([A-Za-z][\w.-]*)", text.split("dependencies:")[1], re.M)
    assert set(deps) <= {"python", "pip"}, f"unexpected conda dependencies: {deps}"


def test_dev_extra_covers_notebooks_and_tests():
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    names = lambda reqs: {re.split(r"[<>=\[ ]", r)[0] for r in reqs}  # noqa: E731
    assert {"jupyterlab", "ipywidgets"} <= names(extras["notebook"])
    assert {"pytest", "nbval"} <= names(extras["test"])
    assert {"torch", "torchvision", "timm", "numpy", "matplotlib", "tqdm"} <= names(project["dependencies"])
    assert "vitlab[notebook,test,hf]" in extras["dev"]  # make test installs the optional hf extra too
    assert {"transformers"} <= names(extras["hf"])


def test_readme_explains_every_dependency_and_names_the_locked_versions():
    readme = (ROOT / "README.md").read_text()
    for req in _direct_requirements():
        assert f"`{req.name}`" in readme, f"README.md does not say why vitlab depends on {req.name}"
    lock = _lock()
    for name in ("torch", "timm", "numpy"):
        assert f"{name} {lock[name][0]}" in readme, f"README.md must name the locked {name} {lock[name][0]}"
