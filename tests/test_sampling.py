"""Epoch samplers (engine/sampling.py): class balance by temperature, random crops, joins of
short texts and id substitution (language-id's accent-free texts)."""

import numpy as np
import pytest

from lstm_engine import runs
from lstm_engine.batching import Encoded
from lstm_engine.checkpoint import load_checkpoint
from lstm_engine.sampling import BalancedSampler, RandomCrops, RandomJoins, RandomSubstitution, chain
from lstm_engine.tasks.language_id import FIRST_ID, LanguageId, unaccented, unaccented_ids


def skewed(sizes=(200, 20, 5)):
    items, targets = [], []
    for c, n in enumerate(sizes):
        for k in range(n):
            items.append(np.array([c, k], dtype=np.int64))
            targets.append(c)
    return Encoded(items, targets)


def counts(data):
    return np.bincount(np.asarray(data.targets), minlength=3)


def test_balance_keeps_the_epoch_size_and_moves_towards_equal_classes():
    data = skewed()
    assert BalancedSampler(1.0, 0)(data, 0) is data
    flat = BalancedSampler(0.0, 0)(data, 0)
    assert len(flat) == len(data) and (abs(counts(flat) - len(data) / 3) <= 1).all()
    half = counts(BalancedSampler(0.5, 0)(data, 0))
    assert counts(data)[2] < half[2] < counts(flat)[2] and half.sum() == len(data)


def test_balance_is_reproducible_per_epoch_and_uses_every_example_before_repeating():
    data = skewed()
    a, b = BalancedSampler(0.0, 7)(data, 3), BalancedSampler(0.0, 7)(data, 3)
    assert [tuple(x) for x in a.items] == [tuple(x) for x in b.items]
    c = BalancedSampler(0.0, 7)(data, 4)
    assert [tuple(x) for x in a.items] != [tuple(x) for x in c.items]
    # class 2 has 5 examples and gets ~75 draws: each of them 15 times, not some 30 and some 0
    drawn = [int(x[1]) for x, t in zip(a.items, a.targets) if t == 2]
    per_example = np.bincount(drawn, minlength=5)
    assert per_example.max() - per_example.min() <= 1


def test_random_crops_are_windows_from_a_word_start():
    space = 9
    seq = np.array([1, 2, 3, space, 4, 5, space, 6, 7, 8, 1, 2], dtype=np.int64)
    crops = RandomCrops(1.0, 3, space, seed=0)
    rng = np.random.default_rng(0)
    starts, lengths = set(), set()
    for _ in range(300):
        w = crops.crop(seq, rng)
        assert len(w) >= 3
        # a contiguous window, starting at 0 or just after a space
        hits = [s for s in range(len(seq) - len(w) + 1) if (seq[s:s + len(w)] == w).all()]
        assert any(s == 0 or seq[s - 1] == space for s in hits)
        starts.add(hits[0])
        lengths.add(len(w))
    assert starts == {0, 4, 7} and min(lengths) == 3 and max(lengths) == len(seq)
    short = np.array([1, 2], dtype=np.int64)
    assert crops.crop(short, rng) is short


def test_crops_touch_the_chosen_share_and_are_reproducible():
    data = Encoded([np.arange(1, 41, dtype=np.int64) for _ in range(400)], [0, 1] * 200)
    a = RandomCrops(0.25, 4, None, seed=1)(data, 0)
    changed = sum(len(x) != 40 for x in a.items)
    assert 60 < changed < 140
    b = RandomCrops(0.25, 4, None, seed=1)(data, 0)
    assert all((x == y).all() for x, y in zip(a.items, b.items))
    assert RandomCrops(0.0, 4, None, seed=1)(data, 0) is data
    both = chain(None, BalancedSampler(1.0, 0), RandomCrops(1.0, 4, None, 0))(data, 0)
    assert all(len(x) <= 40 for x in both.items) and chain(None) is None


def test_substitution_touches_the_chosen_share_and_is_reproducible():
    table = np.array([0, 1, 2, 2, 4, 2])          # 3 and 5 become 2
    data = Encoded([np.array([1, 3, 4, 5], dtype=np.int64) for _ in range(400)], [0, 1] * 200)
    a = RandomSubstitution(0.25, table, seed=1)(data, 0)
    changed = [x for x in a.items if not (x == [1, 3, 4, 5]).all()]
    assert 60 < len(changed) < 140 and all((x == [1, 2, 4, 2]).all() for x in changed)
    b = RandomSubstitution(0.25, table, seed=1)(data, 0)
    assert all((x == y).all() for x, y in zip(a.items, b.items))
    c = RandomSubstitution(0.25, table, seed=1)(data, 1)
    assert any((x != y).any() for x, y in zip(a.items, c.items))
    assert RandomSubstitution(0.0, table, seed=1)(data, 0) is data
    assert all((x == [1, 3, 4, 5]).all() for x in data.items)          # the input is not changed


@pytest.mark.parametrize("text, plain", [("żółć gęślą jaźń", "zolc gesla jazn"), ("příliš žluťoučký", "prilis zlutoucky"),
                                         ("ÉTÉ Ørsted ħ ı", "ETE Orsted h i"), ("tiếng việt", "tieng viet"),
                                         ("καλημέρα ά", "καλημερα α"), ("йод ё", "йод ё"), ("हिन्दी", "हिन्दी"),
                                         ("straße œ", "straße œ")])
def test_unaccented_letters(text, plain):
    assert "".join(map(unaccented, text)) == plain


def test_unaccented_ids_map_to_the_plain_letter_the_encoder_has():
    chars = "aeéèłlxõ"                      # o is not among them: õ keeps its id
    table = unaccented_ids(chars)
    ids = {ch: i + FIRST_ID for i, ch in enumerate(chars)}
    assert list(table[:FIRST_ID]) == [0, 1]
    assert table[ids["é"]] == table[ids["è"]] == ids["e"] and table[ids["ł"]] == ids["l"]
    assert table[ids["õ"]] == ids["õ"] and table[ids["x"]] == ids["x"]


def pieces(seq, boundary):
    """The parts of a joined sequence, split at the boundary id."""
    out, part = [], []
    for x in seq.tolist():
        if x == boundary:
            out.append(tuple(part))
            part = []
        else:
            part.append(x)
    return out + [tuple(part)]


def test_random_joins_append_texts_of_the_same_class_up_to_the_limit():
    boundary, limit = 0, 12
    # class c's texts hold only ids 10c+1..10c+9, so a part from another class would show
    items = [np.array([10 * c + 1 + k % 9] * (1 + k % 4), dtype=np.int64) for c in range(3) for k in range(30)]
    targets = [c for c in range(3) for _ in range(30)]
    data = Encoded(items, targets)
    out = RandomJoins(1.0, limit, boundary, seed=0)(data, 0)
    assert len(out) == len(data) and out.targets == data.targets
    originals = {tuple(x) for x in items}
    for before, after, c in zip(items, out.items, targets):
        assert len(after) == limit               # every text here is short: all reach the limit
        parts = pieces(after, boundary)
        assert parts[0] == tuple(before)         # the text itself comes first
        assert all(p in originals for p in parts[1:-1])          # whole texts in between
        assert all(10 * c < x < 10 * (c + 1) for p in parts for x in p)   # all of its class
    # a text at the limit already is left alone; fraction 0 changes nothing
    long = Encoded([np.arange(1, limit + 3, dtype=np.int64)], [0])
    assert (RandomJoins(1.0, limit, boundary, 0)(long, 0).items[0] == long.items[0]).all()
    assert RandomJoins(0.0, limit, boundary, 0)(data, 0) is data


def test_random_joins_are_reproducible_per_epoch_and_change_about_their_share():
    items = [np.array([1 + k % 5, 2], dtype=np.int64) for k in range(400)]
    data = Encoded(items, [k % 2 for k in range(400)])
    a, b = (RandomJoins(0.5, 9, 0, seed=3)(data, 1) for _ in range(2))
    assert [tuple(x) for x in a.items] == [tuple(x) for x in b.items]
    c = RandomJoins(0.5, 9, 0, seed=3)(data, 2)
    assert [tuple(x) for x in a.items] != [tuple(x) for x in c.items]
    joined = sum(len(x) > 2 for x in a.items)
    assert 160 < joined < 240
    # without a boundary id the texts are put straight together
    assert all(0 not in x for x in RandomJoins(1.0, 9, None, seed=3)(data, 1).items)


def test_language_id_joins_short_texts_up_to_the_training_length_when_asked():
    task = LanguageId()
    encoder = {"chars": "ab ", "max_length": 50}
    data = Encoded([np.array([2, 3], dtype=np.int64)] * 50, [0] * 50)
    config = {"crop_fraction": 0.0, "crop_min": 4, "seed": 0, "balance_temperature": 1.0,
              "max_length": 50, "train_length": 8}
    assert task.epoch_sampler({**config, "join_fraction": 0.0}, encoder) is None
    out = task.epoch_sampler({**config, "join_fraction": 1.0}, encoder)(data, 0)
    space = FIRST_ID + 2
    assert all(x.tolist() == [2, 3, space, 2, 3, space, 2, 3] for x in out.items)


def test_language_id_samples_accent_free_texts_when_asked():
    task = LanguageId()
    encoder = {"chars": "ae é", "max_length": 10}
    data = Encoded([np.array([2, 4, 5, 3], dtype=np.int64)] * 200, [0] * 200)
    config = {"crop_fraction": 0.0, "crop_min": 4, "seed": 0, "balance_temperature": 1.0}
    assert task.epoch_sampler({**config, "unaccent_fraction": 0.0}, encoder) is None
    out = task.epoch_sampler({**config, "unaccent_fraction": 0.5}, encoder)(data, 0)
    plain = sum((x == [2, 4, 3, 3]).all() for x in out.items)
    assert 60 < plain < 140 and plain + sum((x == [2, 4, 5, 3]).all() for x in out.items) == 200


def test_runs_with_crops_and_balance_are_reproducible(tmp_path, lid_tsv):
    config = {"data": str(lid_tsv), "epochs": 2, "hidden_size": 6, "embedding_dim": 4,
              "crop_fraction": 0.5, "balance_temperature": 0.3, "batch_size": 16, "unaccent_fraction": 0.5,
              "join_fraction": 0.5}
    runs.run("language-id", config, tmp_path / "a", backend="numpy", progress=False, test=False)
    runs.run("language-id", config, tmp_path / "b", backend="numpy", progress=False, test=False)
    a = load_checkpoint(tmp_path / "a" / "last.safetensors").tensors
    b = load_checkpoint(tmp_path / "b" / "last.safetensors").tensors
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_bad_sampler_arguments(value):
    with pytest.raises(ValueError, match="temperature"):
        BalancedSampler(value, 0)
    with pytest.raises(ValueError, match="fraction"):
        RandomCrops(value, 3, None, 0)
    with pytest.raises(ValueError, match="fraction"):
        RandomSubstitution(value, np.arange(3), 0)
    with pytest.raises(ValueError, match="fraction"):
        RandomJoins(value, 8, None, 0)
    with pytest.raises(ValueError, match="max_length"):
        RandomJoins(0.5, 0, None, 0)


@pytest.mark.parametrize("table", [np.array([0, 3]), np.array([[0]]), np.array([0.0, 1.0]), np.array([-1, 0])])
def test_bad_substitution_tables(table):
    with pytest.raises(ValueError, match="table"):
        RandomSubstitution(0.5, table, 0)
