"""Token-budget batching: every example once per epoch, each batch within its padded token budget."""

import random

import pytest

from flavorfusion.data.batching import TokenBudgetBatchSampler

from .conftest import FAST, compose_train


def _padded(batch, lengths, multiple):
    longest = max(lengths[i] for i in batch)
    return len(batch) * (-(-longest // multiple) * multiple)


@pytest.fixture(scope="module")
def lengths():
    rng = random.Random(0)
    return [rng.choice([rng.randint(60, 500), rng.randint(500, 2000)]) for _ in range(1000)]


def test_every_example_once_and_within_budget(lengths):
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=8192, pad_to_multiple_of=512, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(_padded(b, lengths, 512) <= 8192 for b in batches)
    assert len(sampler) == len(batches)
    assert max(len(b) for b in batches) == 16 and min(len(b) for b in batches) <= 4  # short ones travel together


def test_same_seed_and_epoch_same_batches_other_epoch_other_order(lengths):
    a = TokenBudgetBatchSampler(lengths, 8192, 512, seed=1)
    b = TokenBudgetBatchSampler(lengths, 8192, 512, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_less_padding_than_fixed_size_batches(lengths):
    sampler = TokenBudgetBatchSampler(lengths, 8192, 512, seed=1)
    batches = list(sampler)
    real = sum(lengths)
    budget_waste = 1 - real / sum(_padded(b, lengths, 512) for b in batches)
    # fixed batches with the same number of batches, shuffled as a plain DataLoader would
    order = list(range(len(lengths)))
    random.Random(1).shuffle(order)
    size = -(-len(lengths) // len(batches))
    fixed = [order[i:i + size] for i in range(0, len(order), size)]
    fixed_waste = 1 - real / sum(_padded(b, lengths, 512) for b in fixed)
    assert budget_waste < fixed_waste / 2, (budget_waste, fixed_waste)


def test_replicas_get_disjoint_equal_shares(lengths):
    shares = [list(TokenBudgetBatchSampler(lengths, 8192, 512, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1])
    assert not {i for b in shares[0] for i in b} & {i for b in shares[1] for i in b}


def test_budget_below_the_longest_example_is_an_error(lengths):
    with pytest.raises(ValueError, match="max_tokens=1024 is below the longest example"):
        TokenBudgetBatchSampler(lengths, 1024, 512)


def test_training_with_a_token_budget(tmp_path):
    from flavorfusion.training import train

    result = train(compose_train([*FAST, "data.batch_tokens=1024"], tmp_path))
    loader = result.datamodule.train_dataloader()
    batches = list(loader)
    assert {b["input_ids"].numel() for b in batches} <= set(range(1, 1025))
    assert sum(len(b["input_ids"]) for b in batches) == len(result.datamodule.train_set)
    assert max(len(b["input_ids"]) for b in batches) > 4  # more rows than data.batch_size=4 where they fit


def test_budget_below_max_source_length_names_the_key(tmp_path):
    from flavorfusion.checks import validate_train
    from flavorfusion.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data.batch_tokens=100 must be null or at least"):
        validate_train(compose_train(["experiment=quickstart", "data.batch_tokens=100"], tmp_path))
