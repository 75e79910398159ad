"""Tag schemes: detection, conversion to IOB2, violations and entity spans."""

from __future__ import annotations

import pytest

from ftkit.data.tags import detect_scheme, entity_spans, scheme_violations, to_iob2


def test_detects_iob1_when_an_entity_begins_with_i():
    assert detect_scheme([["I-ORG", "O", "I-MISC", "O"]]) == "iob1"
    assert detect_scheme([["B-PER", "I-PER", "O"], ["O", "I-LOC"]]) == "iob1"
    assert detect_scheme([["B-PER", "I-LOC"]]) == "iob1"  # I- after another type starts an entity


def test_detects_iob2_when_every_entity_begins_with_b():
    assert detect_scheme([["B-PER", "I-PER", "O", "B-LOC"], ["O", "O"]]) == "iob2"


def test_detects_bioes_from_s_or_e_tags():
    assert detect_scheme([["B-PER", "E-PER", "O"]]) == "bioes"
    assert detect_scheme([["S-LOC"]]) == "bioes"


def test_iob1_becomes_iob2_with_b_at_every_entity_start():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    assert to_iob2(iob1, "iob1") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]


def test_bioes_becomes_iob2():
    bioes = ["B-PER", "I-PER", "E-PER", "S-LOC", "O", "S-ORG", "B-ORG", "E-ORG"]
    assert to_iob2(bioes, "bioes") == ["B-PER", "I-PER", "I-PER", "B-LOC", "O", "B-ORG", "B-ORG", "I-ORG"]


def test_conversion_keeps_the_entities():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    assert entity_spans(to_iob2(iob1, "iob1")) == entity_spans(iob1)


def test_bioes_tag_in_iob_data_is_rejected():
    with pytest.raises(ValueError, match="S-PER"):
        to_iob2(["S-PER"], "iob2")


def test_entity_spans_are_type_start_and_exclusive_end():
    assert entity_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-ORG"]) == [
        ("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5), ("ORG", 5, 6)]
    assert entity_spans(["S-PER", "B-ORG", "E-ORG", "E-ORG"]) == [("PER", 0, 1), ("ORG", 1, 3), ("ORG", 3, 4)]
    assert entity_spans(["O", "O"]) == []


def test_iob2_violation_is_i_after_o_or_another_type():
    assert scheme_violations(["O", "I-PER", "B-LOC", "I-ORG"], "iob2") == [
        (1, "I-PER after O"), (3, "I-ORG after B-LOC")]
    assert scheme_violations(["B-PER", "I-PER"], "iob2") == []


def test_iob1_violation_is_b_not_between_adjacent_entities():
    found = scheme_violations(["O", "B-MISC", "I-MISC", "B-MISC"], "iob1")
    assert [index for index, _ in found] == [1]
    assert "B-MISC after O" in found[0][1]


def test_bioes_violation_is_an_unclosed_or_unopened_entity():
    found = scheme_violations(["B-PER", "O", "E-LOC", "S-ORG"], "bioes")
    assert [index for index, _ in found] == [0, 2]


def test_a_tag_without_prefix_is_a_violation():
    assert scheme_violations(["PER"], "iob2") == [(0, "'PER' is not a tag of the IOB2 scheme")]
