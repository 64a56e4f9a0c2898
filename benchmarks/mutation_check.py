"""A rerunnable mutation check of the core modules: plant one plausible bug at a time (operator swap, off-by-one,
dropped call, changed constant), run the tests that cover that code, restore the file, and count the bugs the
tests caught.

    python benchmarks/mutation_check.py                 # every mutant; JSON + Markdown in benchmarks/results/
    python benchmarks/mutation_check.py --list          # the mutants, without running anything
    python benchmarks/mutation_check.py --only batcher  # mutants whose id contains "batcher" (or: --only a,b)

Each mutant is a textual replacement of one snippet that must occur exactly once in its file (a mutant whose
snippet is gone after a refactor is reported as `stale`, not silently skipped). The mutants are planted in a
copy of the working tree (git's tracked and unignored files, in a temporary directory put first on PYTHONPATH),
so the worktree stays untouched and usable while it runs; `--in-place` mutates the worktree itself instead. The
file is restored after each mutant, also on SIGINT/SIGTERM. The tests of each mutant are a
restricted selection (`-x`, a timeout); a timeout counts as caught (a hang is a visible failure). The same
selections are first run on the unmutated code: a selection that fails there makes the check stop, since its
mutants would look caught for nothing.

mutmut and cosmic-ray were not used: both generate hundreds of mutants per module and run a test command per
mutant; at 10-30 s per pytest start on the shared 2-core machine that is hours, and neither lets each mutant pick
its own few tests as simply as a list does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1]
RESULTS = SOURCE / "benchmarks" / "results"
ROOT = SOURCE  # where the mutants are planted and the tests run: a copy unless --in-place

# test selections (pytest node ids), named once and shared by the mutants
T = {
    "split": ["tests/test_relied_on_behaviours.py::test_validation_split_and_selection_are_stable_across_processes",
              "tests/test_relied_on_behaviours.py::test_validation_split_is_pinned",
              "tests/test_relied_on_behaviours.py::test_validation_split_respects_the_ratio_and_the_seed",
              "tests/test_review_groups.py::test_split_is_deterministic_disjoint_and_near_ratio"],
    "selection": ["tests/test_relied_on_behaviours.py::test_selection_keeps_the_k_longest_and_cuts_chunks_of_max_docs",
                  "tests/test_relied_on_behaviours.py::test_validation_split_and_selection_are_stable_across_processes",
                  "tests/test_review_groups.py::test_augmentation_counts_and_content",
                  "tests/test_relied_on_behaviours.py::test_selection_from_config_reads_its_keys"],
    "encoding": ["tests/test_encoding.py",
                 "tests/test_relied_on_behaviours.py -k train_on_all_references_sets or label_padding"],
    "datamodule": ["tests/test_relied_on_behaviours.py::test_train_on_all_references_reaches_the_datamodule",
                   "tests/test_relied_on_behaviours.py::test_group_by_length_sorts_batches_by_length_and_off_does_not"],
    "evaluate_split": ["tests/test_relied_on_behaviours.py::test_evaluate_split_validation_scores_exactly_the_held_out_groups"],
    "batcher": ["tests/test_relied_on_behaviours.py -k batch_timeout_ms or batcher",
                "tests/test_serve.py::test_batcher_merges_splits_and_bounds"],
    "clipping": ["tests/test_relied_on_behaviours.py -k gradient_clipping"],
    "samples": ["tests/test_relied_on_behaviours.py::test_val_samples_table_is_logged_with_the_generated_rows"],
    "provenance": ["tests/test_relied_on_behaviours.py -k sha256 or provenance or done_ids or refuses"],
    "summarize": ["tests/test_summarize.py::test_one_row_per_group_with_its_fields_model_and_settings"],
    "encoding_threads": ["tests/test_encoding.py::test_groups_encoded_at_once_in_threads_are_each_truncated_to_their_own_budget"],
    "summarize_beam": ["tests/test_summarize_beam.py::test_beam_writes_the_rows_local_writes_and_dead_letters_the_failing_group",
                       "tests/test_summarize_beam.py::test_beam_batches_groups_of_similar_length",
                       "tests/test_summarize_beam.py::test_a_rerun_of_local_retries_the_dead_letters"],
    "generation": ["tests/test_generation.py"],
    "checks": ["tests/test_config_range_checks.py"],
    # the modules added since the first mutation check (issue 30)
    "study": ["tests/test_planted_faults.py -k study",
              "tests/test_study.py::test_report_of_a_grid_sweep_lists_a_run_without_metrics"],
    "sweeper": ["tests/test_planted_faults.py -k sweeper", "tests/test_study.py::test_search_space_from_hydra_overrides",
                "tests/test_study.py::test_objective_values_from_each_kind_of_return"],
    "serving_security": ["tests/test_planted_faults.py -k serving",
                         "tests/test_serve_overload.py -k secret or redacts or idle or header or busy"],
    "grouping": ["tests/test_grouping_abstention.py -k not beam", "tests/test_planted_faults.py -k grouping"],
    "model_limits": ["tests/test_planted_faults.py -k limits",
                     "tests/test_serve.py::test_source_limit_is_the_encoder_positions_rounded_to_the_window"],
    "contrast": ["tests/test_contrast.py", "tests/test_planted_faults.py -k contrast"],
    "batch_invariance": ["tests/test_batch_invariance.py -k any_batch_mates", "tests/test_quantization.py"],
}


@dataclass
class Mutant:
    id: str
    file: str
    find: str
    replace: str
    tests: str  # a key of T
    what: str


M = Mutant
MUTANTS = [
    # ---- the split (data/review_groups.py in_validation) ----
    M("split-python-hash", "flavorfusion/data/review_groups.py",
      'digest = hashlib.blake2b(f"{seed}:{group_id}".encode(), digest_size=8).digest()',
      'digest = (hash(f"{seed}:{group_id}") % 2**64).to_bytes(8, "big")', "split", "per-process hash()"),
    M("split-no-seed", "flavorfusion/data/review_groups.py", 'f"{seed}:{group_id}".encode()', 'f"{group_id}".encode()',
      "split", "seed ignored"),
    M("split-inverted", "flavorfusion/data/review_groups.py", '/ 2**64 < test_ratio', '/ 2**64 > test_ratio', "split",
      "comparison inverted"),
    M("split-scale", "flavorfusion/data/review_groups.py", '/ 2**64 < test_ratio', '/ 2**63 < test_ratio', "split",
      "constant changed"),
    M("split-byteorder", "flavorfusion/data/review_groups.py", 'int.from_bytes(digest, "big")',
      'int.from_bytes(digest, "little")', "split", "byte order changed (the split moves)"),
    # ---- selection (data/selection.py) ----
    M("selection-shortest", "flavorfusion/data/selection.py", "key=len, reverse=True)[:k]", "key=len)[:k]", "selection",
      "shortest instead of longest"),
    M("selection-k-off-by-one", "flavorfusion/data/selection.py", "reverse=True)[:k]",
      "reverse=True)[:k - 1 if k else None]", "selection", "off-by-one on k"),
    M("selection-chunk-off-by-one", "flavorfusion/data/selection.py", "kept[i : i + size]", "kept[i : i + size - 1]",
      "selection", "chunks one review short"),
    M("selection-unseeded-shuffle", "flavorfusion/data/selection.py", 'random.Random(f"{self.seed}:{group.id}")',
      "random.Random()", "selection", "shuffle not seeded"),
    M("selection-seed-only", "flavorfusion/data/selection.py", 'random.Random(f"{self.seed}:{group.id}")',
      "random.Random(self.seed)", "selection", "same shuffle for every group"),
    M("selection-from-config-swapped", "flavorfusion/data/selection.py",
      "cls(data.k_top_longest, data.max_docs_per_review, data.seed)",
      "cls(data.max_docs_per_review, data.k_top_longest, data.seed)", "selection", "config keys swapped"),
    # ---- encoding (data/encoding.py) ----
    M("encoding-budget-no-specials", "flavorfusion/data/encoding.py", "return (max_source_length - 2 - n_docs) // n_docs",
      "return (max_source_length - n_docs) // n_docs", "encoding", "budget forgets BOS/EOS"),
    M("encoding-no-doc-sep", "flavorfusion/data/encoding.py", "        ids.append(doc_sep_id)\n", "", "encoding",
      "separator dropped"),
    M("encoding-no-global-bos", "flavorfusion/data/encoding.py", "mask[:, 0] = 1", "mask[:, 0] = 0", "encoding",
      "no global attention on <s>"),
    M("encoding-label-pad", "flavorfusion/data/encoding.py", "LABEL_PAD_ID = -100", "LABEL_PAD_ID = 0", "encoding",
      "label padding counted in the loss"),
    M("encoding-round-down", "flavorfusion/data/encoding.py", "-(-n // multiple) * multiple", "(n // multiple) * multiple",
      "encoding", "inputs padded down, not up"),
    M("encoding-all-references-ignored", "flavorfusion/data/encoding.py",
      "group.summary if self.train_on_all_references else group.summary[:1]", "group.summary", "encoding",
      "train_on_all_references ignored"),
    M("encoding-validation-last-reference", "flavorfusion/data/encoding.py",
      "self.selection.for_validation(group), group.summary[:1]", "self.selection.for_validation(group), group.summary[-1:]",
      "encoding", "validation loss on another reference"),
    M("encoding-special-tokens", "flavorfusion/data/encoding.py", "(documents, add_special_tokens=False",
      "(documents, add_special_tokens=True",
      "encoding", "each document keeps its own BOS/EOS"),
    M("encoding-attention-mask-short", "flavorfusion/data/encoding.py", "attention_mask[row, :n] = 1",
      "attention_mask[row, : n - 1] = 1", "encoding", "last token masked"),
    # ---- the behaviours of issue 22 outside those modules ----
    M("datamodule-group-by-length-ignored", "flavorfusion/data/datamodule.py", "        if hp.group_by_length:\n",
      "        if False:\n", "datamodule", "group_by_length ignored"),
    M("datamodule-all-references-ignored", "flavorfusion/data/datamodule.py",
      "max_source_length, max_target_length, train_on_all_references)",
      "max_source_length, max_target_length, True)", "datamodule", "data.train_on_all_references not passed"),
    M("evaluate-split-ignored", "flavorfusion/evaluation.py", '    if split == "validation":\n',
      "    if False:\n", "evaluate_split", "split=validation scores every group"),
    M("summarizer-no-clipping", "flavorfusion/models/summarizer.py",
      "torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)", "pass", "clipping", "gradient clipping removed"),
    M("summarizer-no-samples-table", "flavorfusion/models/summarizer.py",
      'logger.log_text("val/samples", columns=["step", "generated", "references"], data=rows)', "pass", "samples",
      "val/samples table not logged"),
    # ---- the batcher (serving/batcher.py) ----
    M("batcher-timeout-microseconds", "flavorfusion/serving/batcher.py", "batch_timeout_ms / 1000",
      "batch_timeout_ms / 1_000_000", "batcher", "wrong unit (too short)"),
    M("batcher-timeout-seconds", "flavorfusion/serving/batcher.py", "batch_timeout_ms / 1000", "batch_timeout_ms",
      "batcher", "wrong unit (too long)"),
    M("batcher-batch-too-big", "flavorfusion/serving/batcher.py", "while len(batch) < self.max_batch_size",
      "while len(batch) <= self.max_batch_size", "batcher", "off-by-one on max_batch_size"),
    M("batcher-wait-from-last", "flavorfusion/serving/batcher.py", "remaining = deadline - time.monotonic()",
      "remaining = self.timeout", "batcher", "wait restarts at every item"),
    M("batcher-queue-bound", "flavorfusion/serving/batcher.py", "if self.depth + len(items) > self.max_queue",
      "if self.depth > self.max_queue", "batcher", "queue bound ignores the request's size"),
    M("batcher-negative-timeout", "flavorfusion/serving/batcher.py", "batch_timeout_ms < 0", "batch_timeout_ms < -1",
      "batcher", "negative timeout accepted"),
    M("batcher-error-swallowed", "flavorfusion/serving/batcher.py", "future.set_exception(err)", "pass", "batcher",
      "a failed batch never answers"),
    # ---- summarize's provenance (models/runtime.py, summarization/local.py and rules.py) ----
    M("provenance-hash-ignores-bytes", "flavorfusion/models/runtime.py",
      'digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")', "pass", "provenance",
      "hash ignores the weights' values"),
    M("provenance-hash-ignores-names", "flavorfusion/models/runtime.py",
      'digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())', "pass", "provenance",
      "hash ignores names, dtypes and shapes"),
    M("provenance-and", "flavorfusion/summarization/local.py",
      "if any(found[key] != expected[key] for key in PROVENANCE_CHECKED):",
      "if all(found[key] != expected[key] for key in PROVENANCE_CHECKED):", "provenance",
      "refused only when everything differs"),
    M("provenance-weights-unchecked", "flavorfusion/summarization/rules.py",
      'PROVENANCE_CHECKED = ("model_sha256", "generation", "contrast")', 'PROVENANCE_CHECKED = ("generation", "contrast")',
      "provenance", "weights hash not compared"),
    M("provenance-check-dropped", "flavorfusion/summarization/local.py",
      "    check_same_provenance(found, provenance, output)\n", "", "provenance", "summarize never checks"),
    M("provenance-only-first-file", "flavorfusion/summarization/local.py", "    for found in provenance:\n",
      "    for found in provenance[:1]:\n", "provenance", "only the first file checked"),
    M("done-ids-empty", "flavorfusion/summarization/local.py", '        ids.update(table.column("id").to_pylist())\n', "",
      "provenance", "done ids not read"),
    M("done-ids-no-provenance", "flavorfusion/summarization/local.py", "        if table.num_rows:\n", "        if False:\n",
      "provenance", "provenance not read"),
    M("done-ids-parts-ignored", "flavorfusion/summarization/local.py",
      'sorted(glob.glob(os.path.join(parts_dir(output), "*.parquet")))', "[]", "provenance", "parts not read"),
    M("summarize-redoes-done", "flavorfusion/summarization/local.py", "todo = [g for g in groups if g.id not in done]",
      "todo = list(groups)", "summarize", "a rerun regenerates everything"),
    M("encoding-threads-unlocked", "flavorfusion/models/runtime.py", "        with self._lock:\n            return",
      "        if True:\n            return", "encoding_threads", "threads encode with one another's budget"),
    # ---- summarize on both engines: retry alone, dead letters, length buckets (summarization/) ----
    M("summarize-batch-fails-whole", "flavorfusion/summarization/rules.py", "        if len(features) == 1:\n",
      "        if len(features) >= 1:\n", "summarize_beam", "a failed batch is not retried item by item"),
    M("summarize-local-dead-letters-dropped", "flavorfusion/summarization/local.py",
      "write_dead_letters(failed_path(output), failed)", "write_dead_letters(failed_path(output), [])",
      "summarize_beam", "local dead letters never written"),
    M("summarize-beam-dead-letters-dropped", "flavorfusion/summarization/beam.py",
      'yield TaggedOutput("failed", json.dumps(dead_letter(group, result.inference), ensure_ascii=False))', "pass",
      "summarize_beam", "beam dead letters never written"),
    M("summarize-beam-no-buckets", "flavorfusion/summarization/beam.py",
      "batch_length_fn=encoded_length, batch_bucket_boundaries=list(settings.buckets)", "", "summarize_beam",
      "RunInference batches ignore length"),
    M("summarize-beam-bucket-edge", "flavorfusion/summarization/beam.py", "    while length < max_source_length:\n",
      "    while length <= max_source_length:\n", "summarize_beam", "a bucket at the source limit"),
    # ---- generation (models/generation.py) ----
    M("generation-min-new-tokens-dropped", "flavorfusion/models/generation.py",
      "min_new_tokens=generation.min_new_tokens,", "min_new_tokens=0,", "generation", "min_new_tokens not passed"),
    M("generation-no-global-mask", "flavorfusion/models/generation.py",
      'MODEL_INPUTS = ("input_ids", "attention_mask", "global_attention_mask")',
      'MODEL_INPUTS = ("input_ids", "attention_mask")', "generation", "global attention mask not passed"),
    M("generation-static-mask-strict", "flavorfusion/models/generation.py",
      "visible = slots[None, :] <= query_positions[:, None]", "visible = slots[None, :] < query_positions[:, None]",
      "generation", "static-cache mask off by one"),
    M("generation-position-offset", "flavorfusion/models/generation.py",
      "torch.arange(seq_len, dtype=torch.long, device=self.weight.device) + cache_length",
      "torch.arange(seq_len, dtype=torch.long, device=self.weight.device)", "generation", "decoder positions not offset"),
    M("generation-cache-auto-beams", "flavorfusion/models/generation.py",
      'torch.device(device).type == "cuda" and num_beams == 1', 'torch.device(device).type == "cuda"', "generation",
      "static cache chosen for beam search"),
    M("generation-no-eval", "flavorfusion/models/generation.py", "    model.eval()\n    try:\n", "    try:\n",
      "generation", "generation with dropout on"),
    M("generation-swap-not-restored", "flavorfusion/models/generation.py",
      "                    module.__class__ = hf_class\n", "                    pass\n", "generation",
      "HF classes not restored"),
    M("generation-missing-inputs-accepted", "flavorfusion/models/generation.py", "    if missing:\n        raise",
      "    if False:\n        raise", "generation", "missing inputs accepted"),
    # ---- the checks (checks.py, flavorfusion/config/*.py) ----
    M("checks-missing-values", "flavorfusion/checks.py", "    if missing:\n        raise ConfigError(f\"{', '.join(",
      "    if False:\n        raise ConfigError(f\"{', '.join(", "checks", "??? not named"),
    M("checks-model-limits", "flavorfusion/checks.py", "if data[key] > limit:", "if data[key] > limit + 1:", "checks",
      "model limit off by one"),
    M("checks-summarize-dir", "flavorfusion/checks.py",
      '    if os.path.isdir(output):\n        raise ConfigError(f"output={output} is a directory: give',
      '    if False:\n        raise ConfigError(f"output={output} is a directory: give', "checks",
      "a directory accepted as summarize output"),
    M("checks-serve-summaries", "flavorfusion/checks.py", "and not os.path.exists(summaries):", "and False:", "checks",
      "missing summaries file accepted"),
    M("checks-prepare-output-dir", "flavorfusion/checks.py", "if not directory and os.path.isdir(output):",
      "if False:", "checks", "a directory accepted as prepare output"),
    M("config-test-ratio-closed", "flavorfusion/config/data.py", "0 < node.test_ratio < 1", "0 <= node.test_ratio <= 1",
      "checks", "test_ratio 0 or 1 accepted"),
    M("config-max-docs-over-k", "flavorfusion/config/data.py", "node.max_docs_per_review <= k",
      "node.max_docs_per_review <= k + 1", "checks", "max_docs_per_review over k accepted"),
    M("config-batch-tokens", "flavorfusion/config/data.py", "batch_tokens >= node.max_source_length",
      "batch_tokens > node.max_source_length", "checks", "batch_tokens = max_source_length refused"),
    M("config-min-new-tokens", "flavorfusion/config/generation.py", "0 <= node.min_new_tokens <= node.max_new_tokens",
      "0 <= node.min_new_tokens", "checks", "min_new_tokens above max accepted"),
    M("config-num-beams", "flavorfusion/config/generation.py", "node.num_beams > 0", "node.num_beams >= 0", "checks",
      "num_beams=0 accepted"),
    M("config-port", "flavorfusion/config/serve.py", "0 < node.port < 65536", "0 < node.port <= 65536", "checks",
      "port 65536 accepted"),
    M("config-batch-timeout", "flavorfusion/config/serve.py", "node.batch_timeout_ms >= 0", "node.batch_timeout_ms > 0",
      "checks", "batch_timeout_ms=0 refused"),
    M("config-trained-variant", "flavorfusion/config/serve.py", 'require(name != "trained"', 'require(True', "checks",
      "a variant named trained accepted"),
    M("config-max-steps-zero", "flavorfusion/config/trainer.py", "node.max_steps >= -1 and node.max_steps != 0",
      "node.max_steps >= -1", "checks", "max_steps=0 accepted"),
    M("config-clip-negative", "flavorfusion/config/trainer.py", "node.gradient_clip_val >= 0",
      "node.gradient_clip_val >= -1", "checks", "negative gradient_clip_val accepted"),
    # ---- the study report and its choice of runs (studies/) ----
    M("study-pareto-ties-dominate", "flavorfusion/studies/sweep.py",
      "(a.rouge_l > b.rouge_l or smaller)", "(a.rouge_l >= b.rouge_l or smaller)", "study",
      "a tie on both objectives dominates (equal runs drop off the front)"),
    M("study-pareto-size-ignored", "flavorfusion/studies/sweep.py", "no_larger = xa is None or xb is None or xa <= xb",
      "no_larger = True", "study", "a larger run can dominate a smaller one"),
    M("study-front-keeps-failed", "flavorfusion/studies/sweep.py",
      "scored = [r for r in runs if r.state == COMPLETE and r.rouge_l is not None]",
      "scored = [r for r in runs if r.rouge_l is not None]", "study", "a failed run with metrics on the front"),
    M("study-choose-tie-larger", "flavorfusion/studies/choose.py",
      "key=lambda r: (r.rouge_l, -(r.value(SIZE_KEY) or 0.0))", "key=lambda r: (r.rouge_l, r.value(SIZE_KEY) or 0.0)",
      "study", "a ROUGE-L tie goes to the larger export"),
    M("study-budget-strict", "flavorfusion/studies/choose.py", "r.value(SIZE_KEY) <= max_size_mb",
      "r.value(SIZE_KEY) < max_size_mb", "study", "a run exactly at the size budget refused"),
    M("study-pick-incomplete", "flavorfusion/studies/choose.py", "if chosen is None or chosen.state != COMPLETE:",
      "if chosen is None:", "study", "--pick takes a failed run"),
    M("study-rouge-key-order", "flavorfusion/studies/sweep.py", 'ROUGE_KEYS = ("best/rougeL", "val/rougeL")',
      'ROUGE_KEYS = ("val/rougeL", "best/rougeL")', "study", "the last epoch's ROUGE-L instead of the exported one's"),
    # ---- the Optuna journal sweeper (launchers/hydra_plugins/optuna_journal_sweeper) ----
    M("sweeper-round-overshoots", "launchers/hydra_plugins/optuna_journal_sweeper/sweeper.py",
      "range(min(n_jobs, n_trials - done))", "range(n_jobs)", "sweeper", "the last round runs more than n_trials"),
    M("sweeper-interrupted-counted", "launchers/hydra_plugins/optuna_journal_sweeper/sweeper.py",
      "if not t.user_attrs.get(TRIAL_INTERRUPTED))", "if True)", "sweeper", "interrupted trials count as done"),
    M("sweeper-interrupted-not-requeued", "launchers/hydra_plugins/optuna_journal_sweeper/sweeper.py",
      "        study.enqueue_trial(frozen.params, skip_if_exists=False)\n", "", "sweeper",
      "an interrupted trial's parameters are not run again"),
    M("sweeper-zero-trials-accepted", "launchers/hydra_plugins/optuna_journal_sweeper/sweeper.py",
      "if n_trials < 1 or n_jobs < 1:", "if n_trials < 0 or n_jobs < 0:", "sweeper", "n_trials=0 accepted"),
    M("sweeper-failure-silent", "launchers/hydra_plugins/optuna_journal_sweeper/sweeper.py",
      "    trial.set_user_attr(TRIAL_ERROR, error)\n", "", "sweeper", "a failed trial's error not recorded"),
    # ---- serving security and limits (serving/) ----
    M("serving-key-optional", "flavorfusion/serving/security.py",
      "return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())",
      "return presented is None or hmac.compare_digest(presented.encode(), expected.encode())", "serving_security",
      "a request without a key passes"),
    M("serving-bearer-case", "flavorfusion/serving/security.py", 'if auth[:7].lower() == "bearer ":',
      'if auth[:7] == "Bearer ":', "serving_security", "`bearer` (lower case) not read"),
    M("serving-secret-on-command-line", "flavorfusion/runs.py", "if match and names_a_secret(match[1]):",
      "if match and names_a_secret(match[1]) and not override.startswith('+'):", "serving_security",
      "+serve.api_key=... accepted"),
    M("serving-query-logged", "flavorfusion/serving/connections.py",
      'self._QUERY.sub("?<redacted>", record.args[2])', "record.args[2]", "serving_security",
      "query strings logged"),
    M("serving-header-limit-off-by-much", "flavorfusion/serving/middleware.py",
      "if header_bytes(scope) > self.max_header_bytes:", "if header_bytes(scope) > 4 * self.max_header_bytes:",
      "serving_security", "the header limit is four times the documented one"),
    M("serving-evict-newest", "flavorfusion/serving/connections.py", "key=lambda c: c._idle_since)",
      "key=lambda c: -c._idle_since)", "serving_security", "the newest idle connection closed first"),
    M("serving-no-grace", "flavorfusion/serving/connections.py", "GRACE_S = 0.5",
      "GRACE_S = 30.0", "serving_security", "fresh idle sockets never closed (the flood keeps its slots)"),
    # ---- the grouping decisions (data/grouping.py) ----
    M("grouping-confidence-inclusive", "flavorfusion/data/grouping.py",
      "if confidence is None or confidence < bounds.min_confidence:",
      "if confidence is None or confidence <= bounds.min_confidence:", "grouping",
      "a confidence exactly at the bound abstains"),
    M("grouping-margin-ignored", "flavorfusion/data/grouping.py",
      "if margin is None or margin < bounds.min_margin:", "if margin is None:", "grouping", "small margins accepted"),
    M("grouping-script-any-language", "flavorfusion/data/grouping.py",
      "if script.name in SCRIPT_LANGUAGE and SCRIPT_LANGUAGE[script.name] == language:",
      "if script.name in SCRIPT_LANGUAGE:", "grouping", "a script's language taken whatever lingua said"),
    M("grouping-han-bound-off-by-one", "flavorfusion/data/grouping.py",
      "if script.letters < bounds.min_han_chars:", "if script.letters <= bounds.min_han_chars:", "grouping",
      "exactly min_han_chars Han characters abstain"),
    M("grouping-surname-bound-inclusive", "flavorfusion/data/grouping.py",
      "elif probability < self.min_probability:", "elif probability <= self.min_probability:", "grouping",
      "a surname probability exactly at the bound abstains"),
    M("grouping-too-short-off-by-one", "flavorfusion/data/grouping.py",
      "elif script.words < bounds.min_words:", "elif script.words <= bounds.min_words:", "grouping",
      "exactly min_words words abstain"),
    # ---- the model's limits in loading (models/loading.py, models/runtime.py, checks.py) ----
    M("limits-window-not-rounded", "flavorfusion/models/loading.py",
      "return positions - positions % window if window else positions", "return positions", "model_limits",
      "source limit not rounded down to the attention window"),
    M("limits-smallest-window", "flavorfusion/models/loading.py",
      "return max(window) if isinstance(window, list | tuple) else window",
      "return min(window) if isinstance(window, list | tuple) else window", "model_limits",
      "padding to the smallest of per-layer windows"),
    M("limits-training-off-by-one", "flavorfusion/checks.py", "if data[key] > limit:", "if data[key] > limit + 1:",
      "model_limits", "training one token beyond the model accepted"),
    M("limits-generation-uncapped", "flavorfusion/models/runtime.py",
      "    if generation.max_new_tokens <= max_new_tokens:\n        return generation",
      "    if True:\n        return generation", "model_limits", "max_new_tokens beyond the decoder not capped"),
    M("limits-min-new-tokens-kept", "flavorfusion/models/runtime.py",
      "min_new_tokens=min(generation.min_new_tokens, max_new_tokens))",
      "min_new_tokens=generation.min_new_tokens)", "model_limits", "min_new_tokens left above the cap"),
    M("limits-decoder-positions", "flavorfusion/models/loading.py",
      'return getattr(config, "max_decoder_position_embeddings", None) or config.max_position_embeddings',
      'return getattr(config, "max_encoder_position_embeddings", None) or config.max_position_embeddings',
      "model_limits", "the decoder's limit read from the encoder's positions"),
    # ---- cultural contrast (contrast.py) and batch invariance (models/quantized.py, models/generation.py) ----
    M("contrast-z-variance", "flavorfusion/contrast.py", "return delta / math.sqrt(1 / (y_i + a_w) + 1 / (y_j + a_w))",
      "return delta / math.sqrt(1 / (y_i + a_w))", "contrast", "z ignores the other groups' variance"),
    M("contrast-tie-specific", "flavorfusion/contrast.py", '"specific": margin > 0})', '"specific": margin >= 0})',
      "contrast", "a tie counts as specific"),
    M("contrast-min-reviews", "flavorfusion/contrast.py", "if own.reviews[term] < settings.min_reviews",
      "if own.reviews[term] < 1", "contrast", "one reviewer's habit becomes a term"),
    M("contrast-stop-edges", "flavorfusion/contrast.py", "if content[i] and content[i + n - 1]]",
      "if content[i] or content[i + n - 1]]", "contrast", "phrases ending in a stop word kept"),
    M("contrast-recall-over-summary", "flavorfusion/contrast.py", "total = sum(review.values())",
      "total = sum(summary.values())", "contrast", "precision instead of the reviews' recall"),
    M("invariance-per-tensor-scale", "flavorfusion/models/quantized.py",
      "x_scale = torch.maximum(high, low.neg_())", "x_scale = torch.maximum(high, low.neg_()).amax().expand_as(high).clone()",
      "batch_invariance", "one activation scale for the whole batch (as the replaced kernel took)"),
    M("invariance-batched-encoder", "flavorfusion/models/generation.py",
      "if generation.batch_invariant and rows is not None and len(rows) > 1:", "if False:", "batch_invariance",
      "one encoder pass for the batch"),
]


@dataclass
class Outcome:
    id: str
    file: str
    what: str
    tests: str
    status: str  # caught | survived | timeout | stale
    seconds: float
    detail: str = ""


def pytest_args(selection: str) -> list[list[str]]:
    """One pytest invocation per entry of the selection (an entry may carry its own -k)."""
    runs = []
    for entry in T[selection]:
        path, _, k = entry.partition(" -k ")
        runs.append([path, "-k", k] if k else [path])
    return runs


def run_selection(selection: str, timeout: float) -> tuple[str, str]:
    """('pass' | 'fail' | 'timeout', last lines) of the selection's pytest runs, stopping at the first failure."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if ROOT != SOURCE:  # the copy's packages before the editable install's (which points at the worktree)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "launchers"), env.get("PYTHONPATH", "")])
    for args in pytest_args(selection):
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *args]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
                                  start_new_session=True)
        except subprocess.TimeoutExpired:
            return "timeout", " ".join(args)
        if proc.returncode == 5:
            raise SystemExit(f"no test collected for {args}: fix the selection {selection!r}")
        if proc.returncode != 0:
            tail = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            return "fail", (tail[0] if tail else proc.stdout.strip().splitlines()[-1])[:200]
    return "pass", ""


class Restore:
    """Writes a mutant into its file and puts the original back on exit, on Ctrl-C and on SIGTERM."""

    def __init__(self, path: Path, mutated: str):
        self.path, self.mutated, self.original = path, mutated, path.read_text()

    def __enter__(self):
        self._old = {s: signal.signal(s, self._signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.path.write_text(self.mutated)
        return self

    def _signal(self, signum, frame):
        self.path.write_text(self.original)
        raise SystemExit(f"interrupted; {self.path} restored")

    def __exit__(self, *exc):
        self.path.write_text(self.original)
        for s, handler in self._old.items():
            signal.signal(s, handler)


def apply(mutant: Mutant) -> str | None:
    text = (ROOT / mutant.file).read_text()
    if text.count(mutant.find) != 1:
        return None
    return text.replace(mutant.find, mutant.replace)


def copy_tree() -> Path:
    """Tracked and unignored files of the worktree, as they are now, in a temporary directory."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=SOURCE, capture_output=True,
                           check=True).stdout.decode().split("\0")
    target = Path(tempfile.mkdtemp(prefix="mutation-check-"))
    for name in filter(None, files):
        if (SOURCE / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(SOURCE / name, target / name)
    return target


def main() -> None:
    global ROOT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the mutants whose id contains this (or any of a,b,c)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per pytest run")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--no-baseline", action="store_true", help="skip running the selections unmutated first")
    parser.add_argument("--output", default=str(RESULTS / "mutation_check.json"))
    parser.add_argument("--in-place", action="store_true", help="mutate the worktree itself (do not edit it meanwhile)")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if any(part in m.id for part in args.only.split(","))]
    if args.list:
        for m in mutants:
            print(f"{m.id:40} {m.file:40} {m.what}")
        return
    if args.in_place:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *{m.file for m in mutants}], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        if dirty:
            raise SystemExit(f"uncommitted changes in the mutated files; commit or stash them first:\n{dirty}")
    else:
        ROOT = copy_tree()
        where = subprocess.run([sys.executable, "-c", "import flavorfusion; print(flavorfusion.__file__)"], cwd=ROOT,
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        if not where.startswith(str(ROOT)):
            raise SystemExit(f"the copy's flavorfusion is not the one imported ({where.strip()}); use --in-place")
        print(f"mutating a copy in {ROOT}", flush=True)
    started = time.perf_counter()
    if not args.no_baseline:
        for selection in sorted({m.tests for m in mutants}):
            status, detail = run_selection(selection, args.timeout)
            print(f"baseline {selection}: {status} {detail}", flush=True)
            if status != "pass":
                raise SystemExit(f"the selection {selection!r} does not pass on the unmutated code: {detail}")
    outcomes = []
    for m in mutants:
        mutated = apply(m)
        start = time.perf_counter()
        if mutated is None:
            outcomes.append(Outcome(m.id, m.file, m.what, m.tests, "stale", 0.0, "snippet not found exactly once"))
        else:
            with Restore(ROOT / m.file, mutated):
                status, detail = run_selection(m.tests, args.timeout)
            outcomes.append(Outcome(m.id, m.file, m.what, m.tests,
                                    {"fail": "caught", "pass": "survived", "timeout": "timeout"}[status],
                                    round(time.perf_counter() - start, 1), detail))
        o = outcomes[-1]
        print(f"{o.status:8} {o.id:40} {o.seconds:6.1f}s {o.detail}", flush=True)
    counted = [o for o in outcomes if o.status != "stale"]
    caught = sum(o.status in ("caught", "timeout") for o in counted)
    summary = {"mutants": len(counted), "caught": caught, "survived": len(counted) - caught,
               "stale": len(outcomes) - len(counted), "caught_share": round(caught / max(len(counted), 1), 3),
               "seconds": round(time.perf_counter() - started, 1), "python": sys.version.split()[0],
               "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.output).with_suffix(".tmp")
    tmp.write_text(json.dumps({"summary": summary, "mutants": [asdict(o) for o in outcomes]}, indent=2) + "\n")
    tmp.replace(args.output)
    print("\n| mutant | file | what | result |\n|---|---|---|---|")
    for o in outcomes:
        print(f"| {o.id} | {o.file.removeprefix('flavorfusion/')} | {o.what} | {o.status} |")
    if ROOT != SOURCE:
        shutil.rmtree(ROOT, ignore_errors=True)
    print(f"\n{caught} of {len(counted)} mutants caught ({100 * summary['caught_share']:.0f}%), "
          f"{summary['stale']} stale, {summary['seconds']:.0f} s; written to {args.output}")


if __name__ == "__main__":
    main()
