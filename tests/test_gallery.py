"""The lesson gallery (vitlab.gallery): the README's and the tour's lesson tables, and the pictures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def lesson_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _linked_lessons(text: str) -> set[str]:
    return set(re.findall(r"\]\((?:notebooks/)?(\d\d_[\w-]+\.ipynb)\)", text))


def test_tour_links_every_lesson_and_only_lessons_that_exist():
    """The tour's lesson table is an output (made by vitlab.gallery.lesson_table when the tour ran)."""
    tour = json.loads((NOTEBOOKS / "00_tour.ipynb").read_text())
    text = "\n".join("".join(c["source"]) for c in tour["cells"] if c["cell_type"] == "markdown")
    text += "\n" + "\n".join("".join(o.get("data", {}).get("text/markdown", "")) for c in tour["cells"]
                      if c["cell_type"] == "code" for o in c["outputs"])
    linked = _linked_lessons(text) - {"00_tour.ipynb"}
    existing = {p.name for p in lesson_notebooks()} - {"00_tour.ipynb"}
    assert existing <= linked, (f"lessons not linked from the tour: {sorted(existing - linked)}; re-execute "
                                "notebooks/00_tour.ipynb (its lesson table lists the notebooks there when it runs)")
    assert linked <= existing, (f"the tour links lessons that do not exist: {sorted(linked - existing)} "
                                "(write them, or take them out of the tour's list)")


def test_readme_lesson_table_is_the_generated_one():
    from vitlab import gallery

    readme = (ROOT / "README.md").read_text()
    assert gallery.README_START in readme and gallery.README_END in readme
    current = readme.split(gallery.README_START, 1)[1].split(gallery.README_END, 1)[0]
    expected = "\n" + gallery.lesson_table(images_dir="docs/images")
    assert current == expected, ("README.md's lesson table is out of date: run "
                                 "`python -m vitlab.gallery --out docs/images --readme README.md`")


def test_gallery_registers_pictures_only_for_known_lessons_and_skips_missing_notebooks(tmp_path):
    from vitlab import gallery

    with pytest.raises(KeyError, match="LESSONS"):
        gallery.register_picture("99_not_a_lesson")
    lines = []
    outcome = gallery.make_pictures(tmp_path / "images", notebooks_dir=tmp_path, only=["01"], log=lines.append)
    assert outcome == {"01_patches_to_tokens": "no notebook"} and "does not exist yet" in lines[0]


def test_gallery_pictures_of_full_results_wait_for_their_data(tmp_path, monkeypatch):
    """Lessons whose picture shows a full-budget result are skipped, with the command that makes it,
    while that result is not in the repository (no picture of a quick run passed off as the result)."""
    from vitlab import gallery
    from vitlab.experiments import common

    monkeypatch.setattr(common, "default_results_path", lambda name, budget: tmp_path / "results" / f"{name}.json")
    lines = []
    outcome = gallery.make_pictures(tmp_path / "images", only=["04", "05", "08", "11", "12"], log=lines.append)
    assert outcome == {stem: "waiting for data" for stem in
                       ("04_data_scale", "05_hybrid", "08_ablations", "11_mae", "12_clip")}
    assert not list((tmp_path / "images").glob("*.png"))
    joined = "\n".join(lines)
    for name in ("data-scale", "hybrid", "ablations", "mae", "clip"):
        assert f"vitlab reproduce {name} --budget full" in joined


def test_gallery_does_not_draw_a_partial_full_result(tmp_path, monkeypatch):
    from vitlab import gallery
    from vitlab.experiments import common

    monkeypatch.setattr(common, "default_results_path", lambda name, budget: tmp_path / f"{name}.json")
    common.ResultsFile(tmp_path / "clip.json", "clip").add({"run_id": "clip/seed=0"})  # one run, unfinished
    lines = []
    outcome = gallery.make_pictures(tmp_path / "images", only=["12"], log=lines.append)
    assert outcome == {"12_clip": "waiting for data"} and "is partial (1 records so far" in lines[0]


def test_the_lesson_table_refuses_a_lesson_without_its_notebook(tmp_path):
    from vitlab import gallery

    with pytest.raises(FileNotFoundError, match="Lesson 00 .* has no notebook"):
        gallery.lesson_table(notebooks_dir=tmp_path)
