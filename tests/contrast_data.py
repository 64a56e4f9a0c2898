"""Restaurants whose cultural groups talk about different things, written by the tests (no download): each group of a
restaurant dwells on its own theme beside shared, ordinary sentences, so the right answer of each contrast measure
is known."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq

from flavorfusion.data.record import SCHEMA

THEMES = {
    "spice": ["The curry was fiery and the chili heat built slowly.", "So spicy, the chili paste made me sweat.",
              "Real chili heat, a fiery vindaloo.", "The heat level is serious, spicy and fiery."],
    "portions": ["Huge portions for the price.", "Generous portions, we took leftovers home.",
                 "Portions are huge and prices are low.", "Generous portions at a fair price."],
    "service": ["The waiter was attentive and remembered our names.", "Attentive staff, the waiter checked on us.",
                "Our waiter was patient and attentive.", "The staff were attentive and the waiter kind."],
    "decor": ["Beautiful lanterns and wooden decor.", "The decor is lovely, lanterns everywhere.",
              "Wooden tables and paper lanterns make a lovely room.", "Lovely decor with old lanterns."],
}
SHARED = ["We came on a Friday night.", "Parking was easy.", "The naan was fine.", "We will come back.",
          "It was our first visit.", "Came for lunch with coworkers."]
LABELS = ["en", "es", "zh", "ko"]


def restaurant_rows(n_restaurants: int, seed: int = 0) -> list[dict]:
    """`n_restaurants` restaurants of 2-3 groups (5-9 reviews each); group i of a restaurant has theme i."""
    rng = random.Random(seed)
    rows = []
    for b in range(n_restaurants):
        n_groups = rng.choice([2, 3])
        themes = rng.sample(sorted(THEMES), n_groups)
        for label, theme in zip(rng.sample(LABELS, n_groups), themes, strict=True):
            reviews = [" ".join([rng.choice(THEMES[theme]), rng.choice(SHARED), rng.choice(THEMES[theme])])
                       for _ in range(rng.randint(5, 9))]
            rows.append({"id": f"r{b:03d}-{label}", "business_id": f"b{b:03d}", "name": f"Place {b}", "group": label,
                         "group_confidence": 0.9, "n_reviews": len(reviews), "reviews": reviews,
                         "summary": f"A place known for its {theme}."})
    return rows


def write_restaurants(path, n_restaurants: int, seed: int = 0) -> list[dict]:
    rows = restaurant_rows(n_restaurants, seed)
    table = pa.Table.from_pylist([{name: row.get(name) for name in SCHEMA.names} for row in rows], schema=SCHEMA)
    pq.write_table(table, path)
    return rows
