"""Prose that matches its outputs: every result-like number a lesson's markdown states must be printed
by that lesson (or be quoted, with its source, in the cell's metadata). See tests/prose_numbers.py."""
from pathlib import Path

import pytest

from prose_numbers import backed, claims, problems

LESSONS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_every_lesson_is_checked():
    assert len(LESSONS) == 13


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.stem[:2] for p in LESSONS])
def test_lesson_prose_numbers_are_in_its_outputs(lesson):
    found = problems(lesson)
    assert not found, (f"{lesson.name}: numbers in the prose that no output prints. Print them, correct the "
                       "prose, or, for a number from a paper or another lesson, list it with its source in the "
                       "cell's metadata ('vitlab': {'quoted': {...}}):\n  " + "\n  ".join(found))


# The checker itself, on hand-made cases: it must be able to fail.

def _notebook(tmp_path, markdown, output, quoted=None):
    import json
    md = {"cell_type": "markdown", "metadata": {"vitlab": {"quoted": quoted}} if quoted else {},
          "source": [markdown]}
    code = {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": ["print(x)"],
            "outputs": [{"output_type": "stream", "name": "stdout", "text": [output]}]}
    path = tmp_path / "lesson.ipynb"
    path.write_text(json.dumps({"cells": [md, code], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_claims_skip_references_code_and_whole_numbers():
    text = ("Sec. 3.1 and Appendix D.4, Table 5, Fig. 7, Eq. 1, torch 2.15.0, `lr=2e-3`, $0.5$, "
            "[x](https://a.b/1.5), 60,000 images, 50 epochs; test 91.2% and 8.6 points, 1.5× the FLOPs, 306.5M")
    assert claims(text) == ["91.2%", "8.6", "1.5", "306.5M"]


def test_backed_rounds_at_the_claims_precision():
    assert backed("91.2%", [0.91234])           # a fraction printed, a percentage stated
    assert backed("91.2%", [91.23])
    assert not backed("91.3%", [0.91234])       # a stale number
    assert backed("-8.6", [-8.60]) and backed("8.6", [-8.60])
    assert backed("306.5M", [306_535_400])
    assert not backed("304.3M", [306_535_400])
    assert backed("65%", [0.6499])


def test_a_stale_number_is_reported(tmp_path):
    assert problems(_notebook(tmp_path, "The ViT reaches 91.2%.", "test accuracy 0.9123")) == []
    found = problems(_notebook(tmp_path, "The ViT reaches 91.5%.", "test accuracy 0.9123"))
    assert len(found) == 1 and "91.5%" in found[0]


def test_quoted_numbers_need_a_source_and_must_still_occur(tmp_path):
    assert problems(_notebook(tmp_path, "The paper: 88.55%.", "nothing", {"88.55%": "ViT paper, Table 2"})) == []
    stale = problems(_notebook(tmp_path, "The paper: 88.6%.", "nothing", {"88.55%": "ViT paper, Table 2"}))
    assert any("88.6%" in p for p in stale) and any("no longer occurs" in p for p in stale)
    assert any("names no source" in p for p in problems(_notebook(tmp_path, "The paper: 88.55%.", "x", {"88.55%": " "})))
