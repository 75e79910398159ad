"""Embedding spaces on constructed vectors: neighbours, analogies, comparison, projection, export, search."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from ftkit.embeddings import (
    Comparison, EmbeddingSpace, ExactIndex, NeighborTable, build_index, compare, export_projector, project,
)
from ftkit.embeddings import index as index_module
from ftkit.errors import FtkitError

ANGLES = [0, 10, 25, 45, 70, 100, 180]  # degrees from word w0, in one plane


def fan_space() -> EmbeddingSpace:
    """Unit vectors in a plane of 8-D space at known angles: cos similarity to w0 is cos(angle)."""
    vectors = torch.zeros(len(ANGLES), 8)
    for i, angle in enumerate(ANGLES):
        vectors[i, 2], vectors[i, 5] = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return EmbeddingSpace([f"w{i}" for i in range(len(ANGLES))], vectors * torch.arange(1, 8)[:, None], lowercase=True)


def random_space(n: int = 300, dim: int = 24, seed: int = 0, name: str = "space") -> EmbeddingSpace:
    generator = torch.Generator().manual_seed(seed)
    return EmbeddingSpace([f"word{i}" for i in range(n)], torch.randn(n, dim, generator=generator), name=name,
                          frequencies=list(range(n, 0, -1)))


def random_rotation(dim: int, seed: int = 1) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q.float()


# ----- neighbours and analogies ------------------------------------------------------------------


def test_neighbors_are_ranked_by_cosine_with_exact_scores_and_exclude_the_query():
    space = fan_space()
    found = space.neighbors("w0", k=4)
    assert [w for w, _ in found] == ["w1", "w2", "w3", "w4"]
    assert [s for _, s in found] == pytest.approx([math.cos(math.radians(a)) for a in ANGLES[1:5]], abs=1e-6)


def test_neighbors_of_a_vector_include_every_word_and_lookup_follows_the_case_rule():
    space = fan_space()
    assert space.neighbors(space.vectors[3], k=1)[0][0] == "w3"
    assert space.neighbors("W6", k=1)[0][0] == "w5"  # lowercase space: "W6" is "w6"
    assert len(space.neighbors("w0", k=100)) == len(ANGLES) - 1


def test_unknown_word_without_subword_pooling_raises_a_clear_error():
    with pytest.raises(FtkitError, match="never occurs in the corpus"):
        fan_space().neighbors("xylophonist")


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_neighbors_reject_a_k_that_is_not_a_positive_whole_number(k):
    with pytest.raises(FtkitError, match="k must be"):
        fan_space().neighbors("w0", k=k)


def test_analogy_finds_the_planted_relation_and_excludes_its_inputs():
    generator = torch.Generator().manual_seed(3)
    countries = torch.randn(6, 32, generator=generator)
    offset = 2 * torch.randn(32, generator=generator)  # "capital of"
    capitals = countries + offset + 0.05 * torch.randn(6, 32, generator=generator)
    words = [f"country{i}" for i in range(6)] + [f"capital{i}" for i in range(6)]
    space = EmbeddingSpace(words, torch.cat([countries, capitals]))
    for i in range(1, 6):
        answers = [w for w, _ in space.analogy("country0", "capital0", f"country{i}", k=3)]
        assert answers[0] == f"capital{i}"
        assert not {"country0", "capital0", f"country{i}"} & set(answers)


def test_top_keeps_the_most_frequent_words_and_subset_keeps_the_given_order():
    space = EmbeddingSpace(list("abcd"), torch.eye(4), frequencies=[1, 5, 3, 5])
    assert space.top(3).words == ["b", "d", "c"]
    assert space.subset(["d", "a", "zzz"]).words == ["d", "a"]
    assert space.subset(["d", "a"]).frequencies.tolist() == [5, 1]


# ----- search index ------------------------------------------------------------------------------


def test_exact_index_excludes_ids_per_query_row():
    index = ExactIndex(torch.eye(3) + 0.1)
    scores, ids = index.search(torch.eye(3) + 0.1, k=1, exclude=[[0], [], [2]])
    assert ids[:, 0].tolist()[1] == 1
    assert ids[0, 0].item() != 0 and ids[2, 0].item() != 2


def test_approximate_index_agrees_with_exact_search():
    vectors = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0))
    exact, approximate = build_index(vectors, approximate=False), build_index(vectors, approximate=True)
    queries = vectors[:50]
    exclude = [[i] for i in range(50)]
    _, exact_ids = exact.search(queries, 10, exclude)
    scores, approximate_ids = approximate.search(queries, 10, exclude)
    recall = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approximate_ids, exact_ids)) / 500
    assert recall > 0.95
    assert not any(i in row.tolist() for i, row in enumerate(approximate_ids))
    assert torch.all(scores[:, :-1] >= scores[:, 1:] - 1e-6)


def test_huge_spaces_get_an_approximate_index_and_asking_for_one_without_hnswlib_fails_clearly(monkeypatch):
    monkeypatch.setattr(index_module, "APPROXIMATE_THRESHOLD", 100)
    monkeypatch.setattr(index_module, "is_hnswlib_available", lambda: False)
    with pytest.warns(UserWarning, match="ftkit\\[ann\\]"):
        assert isinstance(build_index(torch.randn(101, 4)), ExactIndex)
    with pytest.raises(FtkitError, match="hnswlib"):
        build_index(torch.randn(10, 4), approximate=True)


# ----- comparison --------------------------------------------------------------------------------


def test_a_pure_rotation_of_a_space_moves_nothing():
    before = random_space()
    after = EmbeddingSpace(before.words, before.vectors @ random_rotation(before.dim), name="rotated")
    comparison = compare(before, after, k=10)
    assert comparison.overlap.min().item() == 1.0
    assert comparison.shift.max().item() < 1e-5


def test_compare_ranks_a_planted_move_first_even_through_a_rotation():
    before = random_space()
    vectors = before.vectors.clone()
    vectors[7] = vectors[123] + 0.01 * torch.randn(before.dim, generator=torch.Generator().manual_seed(5))
    after = EmbeddingSpace(before.words, vectors @ random_rotation(before.dim), name="after")
    comparison = compare(before, after, k=10)
    moved = comparison.moved(3)
    assert moved["word"].iloc[0] == "word7"
    assert moved["shared_neighbors"].iloc[0] <= 0.2
    assert moved["shift"].iloc[0] == pytest.approx(comparison.shift.max().item())
    assert "word123" in moved["after"].iloc[0]


def test_compare_aligns_spaces_of_different_widths():
    before = random_space(dim=24)
    padded = torch.cat([before.vectors, torch.zeros(len(before), 8)], dim=1) @ random_rotation(32)
    comparison = compare(before, EmbeddingSpace(before.words, padded), k=10)
    assert comparison.rotation.shape == (24, 32)
    assert comparison.overlap.min().item() == 1.0 and comparison.shift.max().item() < 1e-5


def test_compare_uses_the_common_words_and_refuses_spaces_that_share_too_few():
    before = random_space(50)
    after = EmbeddingSpace(before.words[10:] + ["new"], torch.randn(41, before.dim))
    assert set(Comparison(before, after).words) == set(before.words[10:])
    with pytest.raises(FtkitError, match="share 0 words"):
        Comparison(before, EmbeddingSpace(["x", "y", "z"], torch.randn(3, before.dim)))


def test_word_comparison_shows_neighbours_before_and_after_side_by_side():
    before = random_space(name="base")
    vectors = before.vectors.clone()
    vectors[7] = vectors[123]
    table = compare(before, EmbeddingSpace(before.words, vectors, name="tuned"), k=5).word("word7")
    assert isinstance(table, NeighborTable)
    assert list(table.columns) == ["base", "tuned"]
    assert table.columns["tuned"][0][0] == "word123"
    html = table._repr_html_()
    assert "word7" in html and "neighbours kept" in html and 'color:#b35806">word123' in html
    assert table.to_frame().shape == (5, 4)


# ----- projection and export ---------------------------------------------------------------------


def test_pca_is_deterministic_and_keeps_a_planar_shape():
    angles = torch.linspace(0, 2 * math.pi, 40)[:-1]
    plane = torch.stack([angles.cos(), angles.sin()], dim=1)
    embedded = plane @ random_rotation(16)[:2]  # the circle, rotated into 16-D
    xy = project(embedded)
    assert torch.equal(xy, project(embedded))
    distances = lambda points: torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")  # noqa: E731
    assert distances(xy) == pytest.approx(distances(plane), abs=1e-4)


def test_projection_rejects_unknown_methods():
    with pytest.raises(FtkitError, match="pca, umap, auto"):
        project(torch.randn(5, 3), method="tsne")


@pytest.mark.slow
def test_umap_projection_repeats_with_a_seed():
    vectors = torch.randn(60, 8, generator=torch.Generator().manual_seed(0))
    first = project(vectors, method="umap", seed=7)
    assert first.shape == (60, 2)
    assert torch.allclose(first, project(vectors, method="umap", seed=7))


def test_projector_export_reads_back_with_a_header_for_several_columns(tmp_path):
    space = EmbeddingSpace(["paris", "london", "new york"], torch.randn(3, 5), frequencies=[7, 9, 2],
                           tags=["LOC", "LOC", "O"])
    folder = export_projector(space, tmp_path / "projector")
    metadata = pd.read_csv(folder / "metadata.tsv", sep="\t")
    assert list(metadata.columns) == ["word", "frequency", "tag"]
    assert metadata.to_dict("list") == {"word": ["paris", "london", "new york"], "frequency": [7, 9, 2],
                                        "tag": ["LOC", "LOC", "O"]}
    vectors = pd.read_csv(folder / "vectors.tsv", sep="\t", header=None).to_numpy()
    assert vectors == pytest.approx(space.vectors.numpy(), rel=1e-5, abs=1e-6)
    assert 'tensor_path: "vectors.tsv"' in (folder / "projector_config.pbtxt").read_text()


def test_projector_export_keeps_the_most_frequent_words(tmp_path):
    space = EmbeddingSpace(["paris", "london", "new york"], torch.randn(3, 5), frequencies=[7, 9, 2])
    metadata = pd.read_csv(export_projector(space, tmp_path, max_words=2) / "metadata.tsv", sep="\t")
    assert metadata["word"].tolist() == ["london", "paris"]


def test_projector_export_of_bare_words_has_no_header(tmp_path):
    folder = fan_space().export_projector(tmp_path, max_words=3)
    assert (folder / "metadata.tsv").read_text().splitlines() == ["w0", "w1", "w2"]
    assert len((folder / "vectors.tsv").read_text().splitlines()) == 3
