import torch

from flavorfusion.data.encoding import (
    DOC_SEP,
    LABEL_PAD_ID,
    PrimeraCollator,
    document_budget,
    encode_documents,
    encode_target,
)


def test_budget_leaves_room_for_special_tokens():
    assert document_budget(4096, 5) == (4096 - 2 - 5) // 5
    for n_docs in (1, 3, 7):
        assert document_budget(100, n_docs) * n_docs + 2 + n_docs <= 100


def test_layout_separators_and_budget(tokenizer):
    docs = ["the tacos were great " * 30, "slow service", "cozy room and fair prices " * 10]
    ids = encode_documents(tokenizer, docs, max_source_length=64)
    sep = tokenizer.convert_tokens_to_ids(DOC_SEP)
    budget = document_budget(64, 3)
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) <= 64
    sep_positions = [i for i, t in enumerate(ids) if t == sep]
    assert len(sep_positions) == 3 and sep_positions[-1] == len(ids) - 2
    # each document's span (between separators) is within the budget, and long ones use all of it
    starts = [1] + [p + 1 for p in sep_positions[:-1]]
    spans = [end - start for start, end in zip(starts, sep_positions, strict=True)]
    assert spans[0] == budget and spans[2] == budget
    assert spans[1] == len(tokenizer("slow service", add_special_tokens=False)["input_ids"])
    # no stray BOS/EOS inside the documents
    body = ids[1:-1]
    assert tokenizer.bos_token_id not in body and tokenizer.eos_token_id not in body


def test_collator_pads_inputs_to_window_and_labels_to_longest(tokenizer):
    sep = tokenizer.convert_tokens_to_ids(DOC_SEP)
    features = [
        {"input_ids": encode_documents(tokenizer, ["good food", "bad service"], 64),
         "labels": encode_target(tokenizer, "good food, bad service", 32), "id": "a", "summary": ["x"]},
        {"input_ids": encode_documents(tokenizer, ["ok"], 64),
         "labels": encode_target(tokenizer, "ok", 32), "id": "b", "summary": ["y"]},
    ]
    batch = PrimeraCollator(tokenizer.pad_token_id, sep, pad_to_multiple_of=16)(features)
    assert batch["input_ids"].shape[1] % 16 == 0
    assert batch["attention_mask"][1].sum() == len(features[1]["input_ids"])
    # global attention exactly on position 0 and the separators
    for row in range(2):
        expected = {0} | {i for i, t in enumerate(batch["input_ids"][row].tolist()) if t == sep}
        assert set(torch.nonzero(batch["global_attention_mask"][row]).flatten().tolist()) == expected
    assert batch["labels"].shape[1] == max(len(f["labels"]) for f in features)
    assert (batch["labels"][1, len(features[1]["labels"]):] == LABEL_PAD_ID).all()
    assert batch["id"] == ["a", "b"] and batch["summary"] == [["x"], ["y"]]


def test_groups_encoded_at_once_in_threads_are_each_truncated_to_their_own_budget(tokenizer):
    """The server encodes each request in its own thread. A fast tokenizer keeps its truncation length in shared
    state that each call sets, so without GroupEncoder's lock about a fifth of these encodings came out with the
    other group's budget (40 reviews cut to 24 tokens each vs 2 reviews cut to ~500): too long for the model."""
    import threading

    from hydra import compose, initialize_config_dir

    from flavorfusion.data.record import ReviewGroup
    from flavorfusion.models.runtime import GroupEncoder
    from flavorfusion.models.tiny import build_tiny_led

    from .conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        data = compose("summarize", overrides=["model.name_or_path=x", "output=x", "data.path=x"]).data
    encoder = GroupEncoder(tokenizer, build_tiny_led(tokenizer).config, data)
    many = ReviewGroup("many", [("Tasty curry and warm naan, " * 110)[:3000] for _ in range(40)])
    few = ReviewGroup("few", ["The butter chicken was rich and the naan fresh. " * 40, "Slow service. " * 100])
    expected = {g.id: encoder.encode([g])[0]["input_ids"] for g in (many, few)}
    assert len(expected["many"]) <= encoder.max_source_length and len(expected["few"]) <= encoder.max_source_length
    wrong: list[str] = []

    def encode_repeatedly(group):
        for _ in range(50):
            if encoder.encode([group])[0]["input_ids"] != expected[group.id]:
                wrong.append(group.id)

    threads = [threading.Thread(target=encode_repeatedly, args=(g,)) for g in (many, few) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
