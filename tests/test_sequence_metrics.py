"""Label-sequence metrics on known pairs: edit distance and its operations, label error rate,
sequence accuracy and the breakdown by reference length."""

from __future__ import annotations

import numpy as np
import pytest

from lstm_engine.errors import ArgumentError
from lstm_engine.metrics import (edit_distance, edit_operations, label_error_rate, sequence_accuracy,
                                 sequence_scores)


@pytest.mark.parametrize("reference, hypothesis, distance", [
    ("kitten", "sitting", 3),
    ("", "abc", 3),
    ("abc", "", 3),
    ("", "", 0),
    ((1, 2, 3), (1, 2, 3), 0),
    ((1, 2, 3), (1, 3), 1),
    ((1, 1, 2), (2, 1, 1), 2),
    (["the", "cat", "sat"], ["the", "cat", "sat", "down"], 1),
    (["the", "cat"], ["a", "cat"], 1),
    (np.array([4, 0, 7, 1]), np.array([4, 7, 1, 1]), 2),
])
def test_edit_distance_known_pairs(reference, hypothesis, distance):
    assert edit_distance(reference, hypothesis) == distance
    ops = edit_operations(reference, hypothesis)
    assert sum(ops.values()) == distance


def test_edit_operations_tell_the_kinds_apart():
    assert edit_operations((1, 2, 3), (1, 3)) == {"substitutions": 0, "deletions": 1, "insertions": 0}
    assert edit_operations((1, 3), (1, 2, 3)) == {"substitutions": 0, "deletions": 0, "insertions": 1}
    assert edit_operations((1, 2, 3), (1, 5, 3)) == {"substitutions": 1, "deletions": 0, "insertions": 0}


def test_label_error_rate_is_total_edits_over_total_reference_length():
    refs = [(1, 2, 3), (4,), (5, 6)]
    hyps = [(1, 3), (4,), (5, 6, 7, 8)]
    assert label_error_rate(refs, hyps) == pytest.approx(3 / 6)      # not the mean of 1/3, 0, 1
    assert label_error_rate(["ab"], ["abcdef"]) == pytest.approx(2.0)   # insertions can exceed 1
    assert sequence_accuracy(refs, hyps) == pytest.approx(1 / 3)


def test_sequence_scores_totals_and_breakdown():
    refs = ["12", "3", "45", "678", ""]
    hyps = ["12", "8", "4", "678", "9"]
    scores = sequence_scores(refs, hyps)
    assert {k: scores[k] for k in ("n", "reference_labels", "edits", "substitutions", "deletions", "insertions")} \
        == {"n": 5, "reference_labels": 8, "edits": 3, "substitutions": 1, "deletions": 1, "insertions": 1}
    assert scores["label_error_rate"] == pytest.approx(3 / 8)
    assert scores["sequence_accuracy"] == pytest.approx(2 / 5)
    by = scores["by_reference_length"]
    assert list(by) == ["0", "1", "2", "3"]
    assert by["0"] == {"n": 1, "reference_labels": 0, "edits": 1, "label_error_rate": None, "sequence_accuracy": 0.0}
    assert by["2"] == {"n": 2, "reference_labels": 4, "edits": 1, "label_error_rate": 0.25, "sequence_accuracy": 0.5}
    assert by["3"]["label_error_rate"] == 0.0 and by["1"]["sequence_accuracy"] == 0.0


def test_sequence_scores_length_buckets():
    refs = ["a" * n for n in (1, 3, 5, 12, 40)]
    scores = sequence_scores(refs, refs, length_bounds=(2, 10, 20))
    assert {k: v["n"] for k, v in scores["by_reference_length"].items()} == {"0-2": 1, "3-10": 2, "11-20": 1, ">20": 1}


@pytest.mark.parametrize("call, message", [
    (lambda: label_error_rate(["a"], ["a", "b"]), "differ in number"),
    (lambda: label_error_rate([""], ["a"]), "at least one label"),
    (lambda: sequence_accuracy([], []), "at least one pair"),
    (lambda: sequence_scores(["a"], ["a"], length_bounds=(5, 2)), "increasing"),
])
def test_bad_input_is_named(call, message):
    with pytest.raises(ArgumentError, match=message):
        call()
