"""environment.yml and pyproject.toml must describe the same environment."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import pip._vendor.tomli as tomllib


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_environment_yml_installs_the_dev_extra_through_pip():
    text = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*pip\s*$", text, re.M), "environment.yml must list pip"
    assert "-e .[dev]" in text, "environment.yml must install vitlab with `-e .[dev]`"
    py = re.search(r"python\s*>=\s*([\d.]+)", text)
    assert py and py.group(1) == _pyproject()["project"]["requires-python"].lstrip(">="), \
        "python versions differ between environment.yml and pyproject.toml"


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
    assert "vitlab[notebook,test]" in extras["dev"]


def test_readme_explains_every_dependency():
    readme = (ROOT / "README.md").read_text()
    project = _pyproject()["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["notebook"] + \
        project["optional-dependencies"]["test"]
    for req in reqs:
        name = re.split(r"[<>=\[ ]", req)[0]
        assert f"`{name}`" in readme, f"README.md does not say why vitlab depends on {name}"
