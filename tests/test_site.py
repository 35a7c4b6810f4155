"""`make site`: one HTML page per lesson and an index that links them all (the browser test opens them)."""
import re

import pytest

from vitlab.gallery import LESSONS
from vitlab.site import build_site


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return out, build_site(out)


def test_every_lesson_has_a_page_and_the_index_links_it(site):
    out, pages = site
    assert pages[0] == out / "index.html" and len(pages) == 1 + len(LESSONS)
    index = pages[0].read_text()
    for lesson in LESSONS:
        assert f'href="{lesson.notebook}.html"' in index and (out / f"{lesson.notebook}.html").is_file()
    for picture in re.findall(r'src="(images/[^"]+)"', index):
        assert (out / picture).is_file()


def test_links_between_lessons_point_to_pages_not_notebooks(site):
    out, pages = site
    tour = (out / "00_tour.html").read_text()
    assert 'href="06_inside_a_trained_vit.html' in tour
    for page in pages[1:]:
        assert not re.search(r'href="\d\d_\w+\.ipynb', page.read_text()), page.name


def test_a_lesson_page_carries_its_figures_and_its_solutions(site):
    out, _ = site
    page = (out / "03_training_fashion_mnist.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    assert "<details>" in page and "train_by_hand" in page


def test_a_missing_lesson_is_refused(tmp_path):
    (tmp_path / "notebooks").mkdir()
    with pytest.raises(FileNotFoundError, match="No notebook"):
        build_site(tmp_path / "site", notebooks_dir=tmp_path / "notebooks")
