"""The restaurants the page shows: a `summarize` output (one row per restaurant x cultural group) read once at start
and grouped by restaurant, with what the page says of the groups. The page itself is `serving/static/`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from flavorfusion.errors import ConfigError
from flavorfusion.serving.names import LANGUAGES, SURNAME_TRADITIONS, group_name

REQUIRED = ("business_id", "group", "summary")
OPTIONAL = ("name", "n_reviews", "group_confidence", "distinctive_terms", "quotes", "contrast_note", "model")
TERMS_SHOWN = 5
# how the groups were formed, and what their confidence means, by grouping
GROUPINGS = {
    "language": ("Reviewers are grouped by the language they originally wrote in (Google marks a translated review "
                 "and keeps its original); untranslated reviews count as English.",
                 "how sure the language detector was of each review's language, averaged over the group's reviews."),
    "surname": ("Reviewers are grouped by an estimate from their surname (U.S. census surname statistics), never by "
                "anything they said about themselves.",
                "the average probability of the estimated category: a statistical guess about a group, not a fact "
                "about any person."),
    "other": ("Reviewers are grouped by the labels of the data the summaries were made from.",
              "how sure the grouping was, averaged over the group's reviews."),
}
MACHINE_WRITTEN = "The summaries are machine-written by a language model from each group's reviews and can be wrong."
DEMO = ("Demo model: these summaries come from FlavorFusion's quickstart model, a tiny model trained for minutes on "
        "synthetic restaurants. It writes the same template sentences for every restaurant; they say nothing real "
        "about these places.")


@dataclass
class Catalog:
    """Restaurants of a summarize output: business_id -> {name, groups: [row...]}."""

    restaurants: dict[str, dict]
    min_group_reviews: int
    models: tuple[str, ...] = ()  # the model sources the summaries were written with

    @property
    def grouping(self) -> str:
        """How the groups were formed, read from their labels: language, surname or other."""
        labels = {label for r in self.restaurants.values() for label in r["groups"]} - {"all", "unknown"}
        if labels and labels <= set(LANGUAGES):
            return "language"
        if labels and labels <= set(SURNAME_TRADITIONS):
            return "surname"
        return "other"

    @classmethod
    def empty(cls, min_group_reviews: int = 0) -> Catalog:
        return cls({}, min_group_reviews)

    @classmethod
    def from_parquet(cls, path: str, min_group_reviews: int) -> Catalog:
        """A summarize output: one Parquet file (engine=local) or a directory of shards (engine=beam), local or
        in object storage (gs://)."""
        import fsspec
        import pyarrow as pa
        import pyarrow.dataset as ds

        try:
            fs, location = fsspec.core.url_to_fs(path)
            if not fs.exists(location):
                raise ConfigError(f"serve.summaries={path} does not exist (give a `python -m flavorfusion.summarize` "
                                  "output)")
            # a directory's hidden files (`_failed/`, `.x`) are not rows: pyarrow skips `_` and `.` names
            dataset = ds.dataset(location, filesystem=fs, format="parquet")
            names = dataset.schema.names
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                raise ConfigError(f"serve.summaries={path} lacks column(s) {', '.join(missing)}: not a summarize "
                                  "output")
            rows = dataset.to_table(columns=[c for c in (*REQUIRED, *OPTIONAL) if c in names]).to_pylist()
        except (pa.ArrowInvalid, OSError) as err:
            raise ConfigError(f"serve.summaries={path} is not Parquet ({str(err).splitlines()[0]})") from None
        restaurants: dict[str, dict] = {}
        models = sorted({str(row["model"]) for row in rows if row.get("model")})
        for row in rows:
            if row["business_id"] is None:
                continue
            entry = restaurants.setdefault(str(row["business_id"]), {"name": None, "groups": {}})
            entry["name"] = entry["name"] or row.get("name")
            group = row["group"] if row["group"] is not None else "all"
            entry["groups"].setdefault(group, row)  # the first row of a (restaurant, group) wins
        return cls(restaurants, min_group_reviews, tuple(models))

    def about(self, demo_model: bool) -> dict:
        """What the page says of itself: machine-written summaries, how the groups were formed, what confidence
        means, and a note when the summaries or the served model come from the quickstart's demo model."""
        from flavorfusion.models.loading import is_demo_export

        formed, confidence = GROUPINGS[self.grouping]
        demo = demo_model or any(os.path.isdir(m) and is_demo_export(m) for m in self.models)
        return {"text": f"{MACHINE_WRITTEN} {formed}", "grouping": self.grouping, "grouping_text": formed,
                "confidence_text": confidence, "min_group_reviews": self.min_group_reviews, "demo": demo,
                "demo_text": DEMO if demo else None}

    def search(self, query: str = "", limit: int = 50) -> list[dict]:
        query = query.strip().lower()
        found = [{"business_id": bid, "name": r["name"] or bid, "n_groups": len(r["groups"])}
                 for bid, r in self.restaurants.items()
                 if not query or query in (r["name"] or "").lower() or query in bid.lower()]
        return sorted(found, key=lambda r: (r["name"].lower(), r["business_id"]))[:limit]

    def restaurant(self, business_id: str) -> dict | None:
        entry = self.restaurants.get(business_id)
        if entry is None:
            return None
        groups = []
        for name, row in sorted(entry["groups"].items(), key=lambda kv: (-(kv[1].get("n_reviews") or 0), kv[0])):
            n_reviews = row.get("n_reviews")
            confidence = row.get("group_confidence")
            if isinstance(confidence, float) and math.isnan(confidence):
                confidence = None
            summary = (row.get("summary") or "").strip() or None
            too_few = n_reviews is not None and n_reviews < self.min_group_reviews
            terms = [{"term": t["term"], "z": t["z"]} for t in (row.get("distinctive_terms") or [])[:TERMS_SHOWN]]
            shown = {t["term"] for t in terms}
            quotes = [q for q in (row.get("quotes") or []) if q["term"] in shown][:1]
            groups.append({"group": name, "label": group_name(name), "n_reviews": n_reviews, "group_confidence": confidence,
                           "summary": None if too_few else summary, "enough_reviews": bool(summary) and not too_few,
                           "distinctive_terms": terms, "quotes": quotes, "contrast_note": row.get("contrast_note")})
        return {"business_id": business_id, "name": entry["name"] or business_id, "groups": groups}
