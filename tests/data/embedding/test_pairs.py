"""LFW pairs.txt-layout pair lists (visrep.data.embedding.pairs)."""

from __future__ import annotations

import numpy as np
import pytest

from visrep.data.embedding import natural_key, read_pairs
from visrep.errors import DataError

# Sample indices of each identity's images in natural file order (as a split lays them out).
INDEX = {"Ann": [0, 1, 2], "Bob_Lee": [3, 4], "s1": list(range(5, 15))}


def write(tmp_path, text: str):
    p = tmp_path / "pairs.txt"
    p.write_text(text)
    return p


def test_same_and_different_lines_with_1_based_image_numbers(tmp_path):
    p = write(tmp_path, "2\nAnn\t1\t3\ns1 2 10\nAnn 3 Bob_Lee 2\nBob_Lee 1 s1 10\n")
    rows = read_pairs(p, INDEX)
    assert rows.dtype == np.int64
    assert rows.tolist() == [[0, 2, 1], [6, 14, 1], [2, 4, 0], [3, 14, 0]]


def test_folds_header_and_blank_lines(tmp_path):
    p = write(tmp_path, "2 1\nAnn 1 2\nAnn 1 s1 1\n\ns1 1 2\nBob_Lee 2 s1 3\n\n")
    assert read_pairs(p, INDEX)[:, 2].tolist() == [1, 0, 1, 0]


def test_image_number_is_the_position_in_natural_order():
    files = ["s1/10.pgm", "s1/2.pgm", "s1/1.pgm", "Name_0002.jpg", "Name_0001.jpg"]
    assert sorted(files[:3], key=natural_key) == ["s1/1.pgm", "s1/2.pgm", "s1/10.pgm"]
    assert sorted(files[3:], key=natural_key) == ["Name_0001.jpg", "Name_0002.jpg"]
    assert natural_key("a2b") < natural_key("a10b") < natural_key("b1")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1\nZed 1 2\nAnn 1 s1 1\n", r"pairs.txt:2: identity 'Zed' is not in the test split"),
        ("1\nAnn 1 4\nAnn 1 s1 1\n", r"pairs.txt:2: identity 'Ann' has 3 images, no image 4"),
        ("1\nAnn 0 1\nAnn 1 s1 1\n", r"pairs.txt:2: image numbers are 1-based integers, got '0'"),
        ("1\nAnn 1 2\n\nAnn 1 s1 x\n", r"pairs.txt:4: image numbers are 1-based"),
        # three fields are a same pair: 'Ann 1 s1' pairs image 1 of Ann with image 's1'
        ("1\nAnn 1 2\nAnn 1 s1\n", r"pairs.txt:3: image numbers are 1-based integers, got 's1'"),
        ("1\nAnn 1 2 3 4\nAnn 1 s1 1\n", r"pairs.txt:2: expected 'name i j' .*got 5 fields"),
        ("1\nAnn 2 2\nAnn 1 s1 1\n", r"pairs.txt:2: pairs image 2 of 'Ann' with itself"),
        ("1\nAnn 1 2\nAnn 1 Ann 2\n", r"pairs.txt:3: a different pair names identity 'Ann' twice"),
        ("2\nAnn 1 2\nAnn 1 s1 1\n", r"announces 1 x \(2 same \+ 2 different\) = 4 pairs, the f"),
        ("10 300\nAnn 1 2\n", r"announces 10 x \(300 same"),
        ("pairs\nAnn 1 2\n", r"pairs.txt:1: expected a first line 'N' or 'folds N'"),
        ("\n\n", r"the pair list is empty"),
    ],
)
def test_bad_lines_raise_one_line_errors_naming_file_and_line(tmp_path, text, match):
    with pytest.raises(DataError, match=match) as e:
        read_pairs(write(tmp_path, text), INDEX)
    assert "\n" not in str(e.value)


def test_unreadable_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_pairs(tmp_path / "missing.txt", INDEX)
