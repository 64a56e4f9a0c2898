"""Review groups -> PRIMERA batches, as a LightningDataModule (map-style or streaming)."""

import logging
from collections import Counter
from functools import partial

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from flavorfusion.data.batching import TokenBudgetBatchSampler
from flavorfusion.data.encoding import DOC_SEP, ExampleEncoder, PrimeraCollator
from flavorfusion.data.record import CSV_REVIEW_SEPARATOR
from flavorfusion.data.review_groups import ReviewTable, in_validation
from flavorfusion.data.selection import ReviewSelection
from flavorfusion.errors import DataError

log = logging.getLogger(__name__)


class StreamingExamples(IterableDataset):
    """One split of a streamed table: counts skipped rows as it goes and logs them after each pass."""

    def __init__(self, rows: datasets.IterableDataset, split_name: str, keep, expand):
        self.rows, self.split_name, self.keep, self.expand = rows, split_name, keep, expand
        self.skipped: Counter = Counter()

    def set_epoch(self, epoch: int) -> None:
        self.rows.set_epoch(epoch)

    def __iter__(self):
        skipped: Counter = Counter()
        for row in self.rows:
            if row["skip"]:
                skipped[row["skip"]] += 1
                continue
            if not self.keep(row["id"]):
                continue
            batch = self.expand({key: [row[key]] for key in ("id", "reviews", "summary")})
            for i in range(len(batch["id"])):
                yield {key: values[i] for key, values in batch.items()}
        self.skipped = skipped
        if skipped:
            log.info("%s stream: skipped %s", self.split_name, dict(skipped))


class ReviewGroupDataModule(L.LightningDataModule):
    """Loads review groups from one path, a glob or several (local or gs://) and serves PRIMERA batches.

    `tokenizer` and `attention_window` come from the model, not the config.
    """

    def __init__(self, path: str | list[str], columns: dict, review_separator: str = CSV_REVIEW_SEPARATOR,
                 format: str | None = None, streaming: bool = False, shuffle_buffer: int = 1000,
                 test_ratio: float = 0.1, seed: int = 42, subset: int | None = None,
                 k_top_longest: int | None = 20, max_docs_per_review: int = 5,
                 max_source_length: int = 4096, max_target_length: int = 1024,
                 train_on_all_references: bool = True, batch_size: int = 1,
                 eval_batch_size: int | None = None, batch_tokens: int | None = None,
                 group_by_length: bool = False,
                 pad_to_multiple_of: int | None = None, num_proc: int | None = None,
                 num_workers: int = 0, storage_options: dict | None = None,
                 *, tokenizer, attention_window: int | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer"])
        self.tokenizer = tokenizer
        self.table = ReviewTable.from_config(self.hparams)
        self.encoder = ExampleEncoder(tokenizer, ReviewSelection(k_top_longest, max_docs_per_review, seed),
                                      max_source_length, max_target_length, train_on_all_references)
        self.collator = PrimeraCollator(
            pad_token_id=tokenizer.pad_token_id,
            doc_sep_id=tokenizer.convert_tokens_to_ids(DOC_SEP),
            pad_to_multiple_of=pad_to_multiple_of or attention_window,
        )
        self.skipped: Counter = Counter()
        self.train_set = self.val_set = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        hp = self.hparams
        rows = self.table.rows()
        is_val = partial(in_validation, seed=hp.seed, test_ratio=hp.test_ratio)
        if hp.streaming:
            rows = self._for_this_process(rows)
            self.train_set = StreamingExamples(rows.shuffle(seed=hp.seed, buffer_size=hp.shuffle_buffer),
                                               "train", lambda i: not is_val(i), self.encoder.batched(train=True))
            self.val_set = StreamingExamples(rows, "validation", is_val, self.encoder.batched(train=False))
            return
        self.skipped = Counter(s for s in rows["skip"] if s)
        if self.skipped:
            log.warning("skipped %d of %d review groups: %s", sum(self.skipped.values()), len(rows),
                        dict(self.skipped))
        rows = rows.filter(lambda skip: not skip, input_columns="skip", desc="drop skipped groups")
        map_kwargs = {"batched": True, "remove_columns": rows.column_names, "num_proc": hp.num_proc}
        train_rows = rows.filter(lambda i: not is_val(i), input_columns="id", desc="split: training groups")
        val_rows = rows.filter(is_val, input_columns="id", desc="split: validation groups")
        if len(train_rows) == 0 or len(val_rows) == 0:
            raise DataError(
                f"data.test_ratio={hp.test_ratio} leaves {len(train_rows)} training and {len(val_rows)} "
                f"validation groups out of {len(rows)}: both must be non-empty"
            )
        self.train_set = train_rows.map(self.encoder.batched(train=True), desc="encode train", **map_kwargs)
        self.val_set = val_rows.map(self.encoder.batched(train=False), desc="encode validation", **map_kwargs)
        log.info("review groups: %d train -> %d examples, %d validation", len(train_rows),
                 len(self.train_set), len(val_rows))

    def _for_this_process(self, rows: datasets.IterableDataset) -> datasets.IterableDataset:
        if self.trainer is not None and self.trainer.world_size > 1:
            from datasets.distributed import split_dataset_by_node

            return split_dataset_by_node(rows, rank=self.trainer.global_rank, world_size=self.trainer.world_size)
        return rows

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        kwargs = {"batch_size": hp.batch_size, "collate_fn": self.collator, "num_workers": hp.num_workers}
        if hp.streaming:
            return DataLoader(self.train_set, **kwargs)
        # source lengths, read only for the length-aware samplers
        lengths = [len(ids) for ids in self.train_set["input_ids"]] if hp.batch_tokens or hp.group_by_length else []
        if hp.batch_tokens:
            world = self.trainer.world_size if self.trainer is not None else 1
            rank = self.trainer.global_rank if self.trainer is not None else 0
            sampler = TokenBudgetBatchSampler(lengths, hp.batch_tokens,
                                              pad_to_multiple_of=self.collator.pad_to_multiple_of, seed=hp.seed,
                                              num_replicas=world, rank=rank)
            # the sampler splits batches across processes itself: Lightning must not wrap it again
            return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self.collator,
                              num_workers=hp.num_workers)
        if hp.group_by_length:
            from transformers.trainer_pt_utils import LengthGroupedSampler

            generator = torch.Generator().manual_seed(hp.seed)
            sampler = LengthGroupedSampler(hp.batch_size, lengths=lengths, generator=generator)
            return DataLoader(self.train_set, sampler=sampler, **kwargs)
        return DataLoader(self.train_set, shuffle=True, **kwargs)

    def val_dataloader(self) -> DataLoader:
        hp = self.hparams
        return DataLoader(self.val_set, batch_size=hp.eval_batch_size or hp.batch_size,
                          collate_fn=self.collator, num_workers=hp.num_workers)
