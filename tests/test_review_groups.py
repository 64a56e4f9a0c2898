import json

import pytest

from flavorfusion.data.datamodule import ReviewGroupDataModule
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.review_groups import GroupNormalizer, in_validation
from flavorfusion.data.selection import ReviewSelection, longest_reviews
from flavorfusion.errors import DataError


def test_augmentation_counts_and_content():
    group = ReviewGroup("g", [f"review {i} " + "x" * i for i in range(30)], ["s"])
    chunks = ReviewSelection(k_top_longest=20, max_docs_per_review=5, seed=0).for_training(group)
    assert len(chunks) == 4 and all(len(c) == 5 for c in chunks)
    assert sorted(r for c in chunks for r in c) == sorted(sorted(group.reviews, key=len)[-20:])
    assert len(ReviewSelection(5, 5).for_training(group)) == 1  # k == max: no augmentation
    short = ReviewGroup("g", group.reviews[:12])
    assert [len(c) for c in ReviewSelection(20, 5).for_training(short)] == [5, 5, 2]
    # seeded by the seed and the group id: same shuffle in every worker and rerun, another for another group
    assert ReviewSelection(20, 5, 3).for_training(group) == ReviewSelection(20, 5, 3).for_training(group)
    other = ReviewGroup("h", group.reviews)
    assert ReviewSelection(20, 5, 3).for_training(other) != ReviewSelection(20, 5, 3).for_training(group)
    # validation: the k longest, longest first; baselines and evaluate use the same function
    assert ReviewSelection(3, 3).for_validation(group) == longest_reviews(group.reviews, 3) == group.reviews[:-4:-1]


def test_normalizer_separator_columns_and_skips():
    joined = GroupNormalizer("id", "review_str", "summary")
    out = joined({"id": [1, 2, 3], "review_str": ["a|||||b||||| ", "", "c"], "summary": ["s", "t", ""]})
    assert out["id"] == ["1", "2", "3"]
    assert out["reviews"][0] == ["a", "b"]
    assert out["skip"] == ["", "empty_reviews", "no_summary"]
    columns = GroupNormalizer("gid", ["rev1", "rev2"], ["summ1", "summ2"])
    out = columns({"gid": ["g"], "rev1": ["one"], "rev2": [None], "summ1": ["s1"], "summ2": ["s2"]})
    assert out["reviews"] == [["one"]] and out["summary"] == [["s1", "s2"]]
    listed = GroupNormalizer("id", "reviews", None)
    assert listed({"id": ["x"], "reviews": [["r1", "r2"]]})["skip"] == [""]


def test_split_is_deterministic_disjoint_and_near_ratio():
    ids = [f"group-{i}" for i in range(5000)]
    val = {i for i in ids if in_validation(i, seed=1, test_ratio=0.2)}
    assert val == {i for i in ids if in_validation(i, seed=1, test_ratio=0.2)}
    assert 0.17 < len(val) / len(ids) < 0.23
    assert val != {i for i in ids if in_validation(i, seed=2, test_ratio=0.2)}


def write_groups(path, n=60, summary=True):
    with open(path, "w") as f:
        for i in range(n):
            reviews = [f"review {j} of place {i} with good food" for j in range(7)]
            f.write(json.dumps({"id": f"g{i}", "reviews": reviews, "summary": f"place {i} is good" if summary else None})
                    + "\n")
        f.write(json.dumps({"id": "empty", "reviews": [], "summary": "s"}) + "\n")
        f.write(json.dumps({"id": "nosum", "reviews": ["r"], "summary": ""}) + "\n")


def datamodule(tokenizer, path, **kwargs):
    params = dict(path=str(path), columns={"id": "id", "reviews": "reviews", "summary": "summary"},
                  test_ratio=0.25, k_top_longest=6, max_docs_per_review=3, max_source_length=128,
                  max_target_length=32, batch_size=4, tokenizer=tokenizer, attention_window=32)
    return ReviewGroupDataModule(**{**params, **kwargs})


def ids_of(dataset):
    return {example["id"] for example in dataset}


def test_datamodule_split_disjoint_in_both_modes(tokenizer, tmp_path, caplog):
    path = tmp_path / "groups.jsonl"
    write_groups(path)
    dm = datamodule(tokenizer, path)
    with caplog.at_level("WARNING"):
        dm.setup()
    assert dm.skipped == {"empty_reviews": 1, "no_summary": 1}
    assert "skipped 2 of 62 review groups" in caplog.text
    train_ids, val_ids = ids_of(dm.train_set), ids_of(dm.val_set)
    assert train_ids.isdisjoint(val_ids) and len(train_ids | val_ids) == 60
    # 7 reviews, k=6, 3 per example: two training examples per group, one validation example
    assert len(dm.train_set) == 2 * len(train_ids) and len(dm.val_set) == len(val_ids)

    stream = datamodule(tokenizer, path, streaming=True)
    stream.setup()
    assert ids_of(stream.train_set) == train_ids and ids_of(stream.val_set) == val_ids
    assert stream.train_set.skipped == {"empty_reviews": 1, "no_summary": 1}
    batch = next(iter(stream.train_dataloader()))
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] % 32 == 0


def test_group_by_length_batches(tokenizer, tmp_path):
    path = tmp_path / "groups.jsonl"
    write_groups(path)
    dm = datamodule(tokenizer, path, group_by_length=True)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert sum(len(b["id"]) for b in batches) == len(dm.train_set)


def test_missing_column_names_column_and_file(tokenizer, tmp_path):
    path = tmp_path / "groups.csv"
    path.write_text("id,summary,reviews\n1,s,a|||||b\n")
    with pytest.raises(DataError, match=r"column 'review_str' not found in .*groups\.csv"):
        datamodule(tokenizer, path, columns={"id": "id", "reviews": "review_str", "summary": "summary"}).setup()


def test_pattern_matching_nothing_names_it(tokenizer, tmp_path):
    pattern = str(tmp_path / "nothing-*.parquet")
    with pytest.raises(DataError, match="no file matches .*nothing-\\*\\.parquet"):
        datamodule(tokenizer, pattern).setup()


def test_original_csv_and_glob_of_several_files(tokenizer, tmp_path):
    for part in range(2):
        rows = "".join(f'p{part}-{i},summary {i},"good ramen|||||slow service|||||cozy room {i}"\n' for i in range(20))
        (tmp_path / f"part-{part}.csv").write_text("id,summary,review_str\n" + rows)
    dm = datamodule(tokenizer, tmp_path / "part-*.csv", columns={"id": "id", "reviews": "review_str",
                                                                   "summary": "summary"})
    dm.setup()
    assert len(ids_of(dm.train_set) | ids_of(dm.val_set)) == 40
