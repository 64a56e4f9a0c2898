"""PRIMERA input conventions: `<s> doc1 <doc-sep> doc2 <doc-sep> ... </s>` and the batch collator.

Every document gets the same token budget, `(max_source_length - 2 - n_docs) // n_docs`, so one
long review cannot crowd out the others; global attention goes on `<s>` and on every `<doc-sep>`.
"""

from dataclasses import dataclass

import torch

from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection

DOC_SEP = "<doc-sep>"
LABEL_PAD_ID = -100  # ignored by the cross-entropy loss


def document_budget(max_source_length: int, n_docs: int) -> int:
    """Tokens each document may use once BOS, EOS and one separator per document are paid for."""
    return (max_source_length - 2 - n_docs) // n_docs


def encode_documents(tokenizer, documents: list[str], max_source_length: int) -> list[int]:
    """Token ids of one review group in PRIMERA's multi-document layout."""
    if not documents:
        raise ValueError("cannot encode a review group without documents")
    budget = document_budget(max_source_length, len(documents))
    if budget < 1:
        raise ValueError(
            f"max_source_length={max_source_length} leaves no tokens for {len(documents)} documents"
        )
    doc_sep_id = tokenizer.convert_tokens_to_ids(DOC_SEP)
    # add_special_tokens=False strips each document's own BOS/EOS
    bodies = tokenizer(documents, add_special_tokens=False, truncation=True, max_length=budget)["input_ids"]
    ids = [tokenizer.bos_token_id]
    for body in bodies:
        ids.extend(body)
        ids.append(doc_sep_id)
    ids.append(tokenizer.eos_token_id)
    return ids


def encode_target(tokenizer, summary: str, max_target_length: int) -> list[int]:
    return tokenizer(summary, truncation=True, max_length=max_target_length)["input_ids"]


def global_attention_mask(input_ids: torch.Tensor, doc_sep_id: int) -> torch.Tensor:
    """1 on the first token and on every document separator, 0 elsewhere."""
    mask = (input_ids == doc_sep_id).long()
    mask[:, 0] = 1
    return mask


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


@dataclass
class PrimeraCollator:
    """Pads a list of encoded examples into one LED batch.

    Inputs are padded to a multiple of the attention window (LED would pad them itself on every
    forward); labels only to the longest in the batch, with pad positions set to -100.
    """

    pad_token_id: int
    doc_sep_id: int
    pad_to_multiple_of: int | None = 512

    def __call__(self, features: list[dict]) -> dict:
        src_len = _round_up(max(len(f["input_ids"]) for f in features), self.pad_to_multiple_of)
        input_ids = torch.full((len(features), src_len), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[row, :n] = torch.as_tensor(f["input_ids"])
            attention_mask[row, :n] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "global_attention_mask": global_attention_mask(input_ids, self.doc_sep_id),
        }
        if "labels" in features[0]:
            tgt_len = max(len(f["labels"]) for f in features)
            labels = torch.full((len(features), tgt_len), LABEL_PAD_ID, dtype=torch.long)
            for row, f in enumerate(features):
                labels[row, : len(f["labels"])] = torch.as_tensor(f["labels"])
            batch["labels"] = labels
        for key in ("id", "summary"):  # carried through for ROUGE and sample tables
            if key in features[0]:
                batch[key] = [f[key] for f in features]
        return batch


@dataclass(frozen=True)
class ExampleEncoder:
    """Review groups -> encoded examples `{id, input_ids, labels, summary}` (`summary`: every reference).

    Training groups are cut into several examples by the selection's augmentation, each paired with every
    reference (or only the first); validation, evaluation and generation use one example per group with
    the k longest reviews.
    """

    tokenizer: object
    selection: ReviewSelection
    max_source_length: int
    max_target_length: int
    train_on_all_references: bool = True

    def _examples(self, group: ReviewGroup, docs: list[str], targets: list[str]) -> list[dict]:
        input_ids = encode_documents(self.tokenizer, docs, self.max_source_length)  # once, shared by every target
        return [{"id": group.id, "input_ids": input_ids,
                 "labels": encode_target(self.tokenizer, target, self.max_target_length) if target else [],
                 "summary": group.summary} for target in targets or [None]]

    def training_examples(self, group: ReviewGroup) -> list[dict]:
        targets = group.summary if self.train_on_all_references else group.summary[:1]
        return [example for docs in self.selection.for_training(group)
                for example in self._examples(group, docs, targets)]

    def validation_example(self, group: ReviewGroup) -> dict:
        return self._examples(group, self.selection.for_validation(group), group.summary[:1])[0]

    def batched(self, train: bool):
        """A batched `datasets.map` function over normalized rows."""

        def encode(batch: dict[str, list]) -> dict[str, list]:
            out = {"id": [], "input_ids": [], "labels": [], "summary": []}
            for i in range(len(batch["id"])):
                group = ReviewGroup(batch["id"][i], batch["reviews"][i], batch["summary"][i])
                for example in self.training_examples(group) if train else [self.validation_example(group)]:
                    for key in out:
                        out[key].append(example[key])
            return out

        return encode
