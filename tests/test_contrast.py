"""What sets each group of a restaurant apart (flavorfusion.contrast): Fightin' Words terms checked by hand, quotes,
specificity at its known answers (own summaries, a shared summary) and the notes of groups without terms."""

from __future__ import annotations

import math

import pytest

from flavorfusion import contrast
from flavorfusion.config.contrast import ContrastConf
from flavorfusion.data.record import ReviewGroup
from flavorfusion.data.selection import ReviewSelection

from .contrast_data import THEMES, restaurant_rows

SETTINGS = ContrastConf()
SPICE = THEMES["spice"] * 3
PORTIONS = THEMES["portions"] * 3


def test_z_scores_equal_a_hand_computation_on_three_documents():
    # group a: two documents, group b: one; unigrams only, every term counted by one review is enough
    settings = ContrastConf(min_z=-100, max_ngram=1, min_reviews=1, prior_weight=1.0, max_terms=100)
    found = contrast.restaurant_terms({"a": ["hot hot chili", "hot rice"], "b": ["cheap rice"]}, settings)
    z = {t.term: t.z for t in found["a"].terms}
    # counts: a = {hot: 3, chili: 1, rice: 1} (n=5), b = {cheap: 1, rice: 1} (n=2); background = both (n=7)
    # a_0 = 1.0 * 7 = 7, a_w = 7 * share = the background count itself
    def by_hand(y_a, y_b, a_w):
        delta = math.log((y_a + a_w) / (5 + 7 - y_a - a_w)) - math.log((y_b + a_w) / (2 + 7 - y_b - a_w))
        return delta / math.sqrt(1 / (y_a + a_w) + 1 / (y_b + a_w))

    assert z["hot"] == pytest.approx(by_hand(3, 0, 3), abs=1e-4)  # log(6/6) - log(3/6) = 0.6931 ...
    assert z["hot"] == pytest.approx(0.6931472 / math.sqrt(1 / 6 + 1 / 3), abs=1e-4)
    assert z["chili"] == pytest.approx(by_hand(1, 0, 1), abs=1e-4)
    assert z["rice"] == pytest.approx(by_hand(1, 1, 2), abs=1e-4)
    assert z["rice"] < 0 < z["chili"] < z["hot"]
    assert "cheap" not in z  # a term group a never uses is not one of its terms


def test_spice_and_portion_groups_get_their_own_words_and_quotes():
    found = contrast.restaurant_terms({"spice": SPICE, "portions": PORTIONS}, SETTINGS)
    spice = {t.term for t in found["spice"].terms}
    portions = {t.term for t in found["portions"].terms}
    assert {"spicy", "chili", "heat", "fiery"} & spice and not spice & {"portions", "generous", "huge"}
    assert "portions" in portions and {"generous", "generous portions"} & portions
    assert not portions & {"spicy", "chili", "heat"}
    assert all(t.z >= 1.96 for t in found["spice"].terms + found["portions"].terms)
    for label, reviews in (("spice", SPICE), ("portions", PORTIONS)):
        quotes = found[label].quotes
        assert {q["term"] for q in quotes} == {t.term for t in found[label].terms}
        for quote in quotes:  # each quote is a sentence of that group's reviews holding the term
            assert quote["term"].split()[0] in quote["text"].lower()
            assert any(quote["text"] in review for review in reviews)
    assert found["spice"].note is None


def test_a_phrase_replaces_the_words_it_always_holds():
    reviews = {"a": ["The palak paneer was great.", "Palak paneer again, so good.", "Best palak paneer in town."] * 4,
               "b": ["The tacos were fine.", "Tacos and beer.", "Fine tacos, cold beer."] * 4}
    terms = [t.term for t in contrast.restaurant_terms(reviews, SETTINGS)["a"].terms]
    assert "palak paneer" in terms and "palak" not in terms and "paneer" not in terms


def test_no_terms_for_a_lone_group_a_group_without_restaurant_or_without_evidence():
    assert contrast.restaurant_terms({"en": SPICE}, SETTINGS)["en"].note == contrast.ONE_GROUP
    group = ReviewGroup("g", SPICE)
    assert contrast.group_contrast(group, None, ReviewSelection(), SETTINGS).note == contrast.NO_RESTAURANT
    same = contrast.restaurant_terms({"a": SPICE, "b": SPICE}, SETTINGS)
    assert same["a"].terms == [] and same["a"].note.startswith("no term is used more")
    off = contrast.restaurant_terms({"a": SPICE, "b": PORTIONS}, ContrastConf(enabled=False))
    assert off["a"].columns() == {"distinctive_terms": [], "quotes": [], "contrast_note": contrast.DISABLED}


def test_stop_words_and_phrases_edged_by_them_are_not_terms():
    grams = list(contrast.ngrams(contrast.words("The food was not spicy at all"), 2))
    assert grams == ["food", "spicy"]  # "the food", "not spicy", "spicy at" ... start or end with a stop word


def test_a_small_restaurant_takes_the_prior_from_the_whole_table():
    settings = ContrastConf(min_background_reviews=50)
    table = contrast.table_background([SPICE, PORTIONS, ["tacos tacos tacos"] * 40], settings)
    small = contrast.restaurant_terms({"spice": SPICE, "portions": PORTIONS}, settings, table)
    own = contrast.restaurant_terms({"spice": SPICE, "portions": PORTIONS}, settings)
    big = contrast.restaurant_terms({"spice": SPICE, "portions": PORTIONS}, ContrastConf(min_background_reviews=1),
                                    table)
    # the table's background shifts the prior (tacos take its mass), so the z-scores move; with the threshold at
    # one review the restaurant's own background is used, as without a table
    assert [t.z for t in small["spice"].terms] != [t.z for t in own["spice"].terms]
    assert big["spice"].terms == own["spice"].terms


def test_a_shared_summary_is_at_chance_and_group_summaries_are_specific():
    reviews = {"spice": SPICE, "portions": PORTIONS, "service": THEMES["service"] * 3}
    own = {"spice": "Fiery, spicy chili heat.", "portions": "Generous portions, huge.",
           "service": "An attentive waiter."}
    specific = contrast.restaurant_specificity("b", own, reviews)
    assert specific.specific == 3 and all(g["margin"] > 0 for g in specific.groups)
    shared = contrast.restaurant_specificity("b", dict.fromkeys(reviews, "Spicy chili, generous portions, attentive "
                                                                          "waiter."), reviews)
    assert shared.specific == 1  # one shared text is closest to exactly one group's reviews
    report = contrast.specificity_report([specific, shared])
    assert report["summaries"] == 6 and report["specific"] == 4 and report["chance"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["per_restaurant"][0]["business_id"] == "b"
    assert "66.7% of 6 summaries in 2 restaurants (chance 33.3%)" in contrast.specificity_line(report)


def test_an_empty_summary_is_not_specific_and_one_group_has_no_record():
    reviews = {"spice": SPICE, "portions": PORTIONS}
    record = contrast.restaurant_specificity("b", {"spice": "", "portions": "Huge portions."}, reviews)
    assert {g["group"]: g["specific"] for g in record.groups} == {"portions": True, "spice": False}
    assert contrast.restaurant_specificity("b", {"spice": "Spicy."}, reviews) is None
    assert contrast.specificity_report([])["share_specific"] is None


def test_table_specificity_uses_the_reviews_each_summary_was_made_from():
    rows = restaurant_rows(20, seed=1)
    groups = [ReviewGroup.from_row({**row, "summary": None}) for row in rows]
    selection = ReviewSelection(k_top_longest=4)
    theme_of = {row["id"]: row["summary"].removeprefix("A place known for its ").rstrip(".") for row in rows}
    summaries = {g.id: " ".join(THEMES[theme_of[g.id]][:2]) for g in groups}
    report = contrast.table_specificity(groups, summaries, selection)
    assert report["restaurants"] == 20 and report["summaries"] == len(groups)
    assert report["share_specific"] == 1.0 and report["chance"] < 0.5
