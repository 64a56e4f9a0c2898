"""The restaurant browser: a `summarize` output (one row per restaurant x cultural group) read once at start,
grouped by restaurant, and the single HTML page (`/app`) that shows it and summarizes pasted reviews."""

from __future__ import annotations

import math
from dataclasses import dataclass

from flavorfusion.errors import ConfigError
from flavorfusion.serving.names import LANGUAGES, SURNAME_TRADITIONS, group_name

REQUIRED = ("business_id", "group", "summary")
OPTIONAL = ("name", "n_reviews", "group_confidence", "distinctive_terms", "quotes", "contrast_note")
TERMS_SHOWN = 5
GROUPINGS = {
    "language": "Reviewers are grouped by the language they originally wrote in (Google marks a translated review "
                "and keeps its original); untranslated reviews count as English. Confidence is how sure the language "
                "detector was, averaged over the group's reviews.",
    "surname": "Reviewers are grouped by an estimate from their surname (U.S. census surname statistics), never by "
               "anything they said about themselves. Confidence is the average probability of the estimated "
               "category: a statistical guess about a group, not a fact about any person.",
    "other": "Reviewers are grouped by the labels of the data the summaries were made from.",
}


@dataclass
class Catalog:
    """Restaurants of a summarize output: business_id -> {name, groups: [row...]}."""

    restaurants: dict[str, dict]
    min_group_reviews: int

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
        for row in rows:
            if row["business_id"] is None:
                continue
            entry = restaurants.setdefault(str(row["business_id"]), {"name": None, "groups": {}})
            entry["name"] = entry["name"] or row.get("name")
            group = row["group"] if row["group"] is not None else "all"
            entry["groups"].setdefault(group, row)  # the first row of a (restaurant, group) wins
        return cls(restaurants, min_group_reviews)

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


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FlavorFusion</title>
<link rel="icon" href="data:,">
<style>
  *, *::before, *::after { box-sizing: border-box; }
  body { font-family: system-ui, sans-serif; margin: 0; color: #1f1f1f; background: #faf8f5;
    overflow-wrap: anywhere; line-height: 1.45; }
  header { background: #7a2e12; color: #fff; padding: 14px clamp(12px, 3vw, 24px); }
  header h1 { margin: 0; font-size: 22px; }
  header p { margin: 4px 0 0; font-size: 14px; }
  main { display: grid; grid-template-columns: minmax(0, 18rem) minmax(0, 1fr); gap: 24px;
    padding: 20px clamp(12px, 3vw, 24px); align-items: start; max-width: 100%; }
  main > section { min-width: 0; }
  main > section:first-child { position: sticky; top: 12px; }
  @media (max-width: 720px) {
    main { grid-template-columns: minmax(0, 1fr); gap: 16px; }
    main > section:first-child { position: static; }
    #restaurants { max-height: 40vh; }
  }
  input, textarea, select, button { font: inherit; max-width: 100%; }
  #search { width: 100%; padding: 8px; border: 1px solid #767676; border-radius: 6px; }
  #restaurants { list-style: none; padding: 0; margin: 10px 0; max-height: 70vh; overflow-y: auto; overflow-x: hidden; }
  #restaurants li button { width: 100%; text-align: left; padding: 8px 10px; border: 0; border-radius: 6px;
    background: none; cursor: pointer; color: inherit; overflow-wrap: anywhere; }
  #restaurants li button:hover, #restaurants li button.selected { background: #f0e2d8; }
  #restaurants li button:focus-visible, button:focus-visible, input:focus-visible, textarea:focus-visible {
    outline: 3px solid #1a5fb4; outline-offset: 1px; }
  .muted { color: #595959; font-size: 13px; }
  #groups { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 16rem), 1fr)); gap: 12px;
    margin-bottom: 12px; }
  .card { background: #fff; border: 1px solid #d9d2ca; border-radius: 10px; padding: 14px 16px; min-width: 0; }
  #groups .card { margin: 0; }
  .card h3 { margin: 0 0 6px; font-size: 16px; }
  .card h3 abbr { text-decoration: none; cursor: help; }
  .card .code { color: #595959; font-weight: normal; font-size: 13px; }
  .card .meta { color: #595959; font-size: 13px; margin-bottom: 8px; }
  .card.too-few .summary { font-style: italic; color: #595959; }
  .card .contrast { border-top: 1px solid #eee4dc; margin-top: 10px; padding-top: 8px; font-size: 14px; }
  .card .contrast h4 { margin: 0 0 6px; font-size: 13px; font-weight: 600; color: #595959; }
  .terms { list-style: none; padding: 0; margin: 0 0 6px; display: flex; flex-wrap: wrap; gap: 6px; }
  .terms li { background: #f0e2d8; border-radius: 12px; padding: 2px 10px; max-width: 100%; }
  .card blockquote { margin: 6px 0 0; padding-left: 10px; border-left: 3px solid #d9b8a3; font-style: italic; }
  #about { margin: 6px 0 0; font-size: 13px; max-width: 70rem; }
  textarea { width: 100%; min-height: 110px; padding: 8px; border: 1px solid #767676; border-radius: 6px; }
  button.primary { background: #7a2e12; color: #fff; border: 0; border-radius: 6px; padding: 8px 16px;
    cursor: pointer; margin-top: 8px; }
  #own-result { white-space: pre-wrap; }
  .error { color: #b00020; }
</style>
</head>
<body>
<header><h1>FlavorFusion</h1><p>What do people of each culture think of this restaurant?</p>
<p id="about"></p></header>
<main>
  <section aria-label="Restaurants">
    <input id="search" type="search" placeholder="Search a restaurant" aria-label="Search a restaurant">
    <ul id="restaurants"></ul>
    <p id="count" class="muted" aria-live="polite"></p>
  </section>
  <section>
    <h2 id="restaurant-name">Pick a restaurant</h2>
    <div id="groups" aria-live="polite" aria-label="Summaries by group, side by side"></div>
    <div class="card">
      <h3>Summarize your own reviews</h3>
      <p class="muted">One review per paragraph (separate them with an empty line).</p>
      <textarea id="own-reviews" aria-label="Reviews"></textarea>
      <button id="own-submit" class="primary">Summarize</button>
      <p id="own-result" aria-live="polite"></p>
    </div>
  </section>
</main>
<script>
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };

async function getJson(url, options) {
  const r = await fetch(url, options);
  let data = {};
  try { data = await r.json(); } catch (e) { data = {error: 'the server answered ' + r.status}; }
  return [r.ok, data];
}

async function search(query) {
  const [ok, data] = await getJson('/api/restaurants?q=' + encodeURIComponent(query));
  const list = document.getElementById('restaurants');
  list.replaceChildren();
  if (!ok) { document.getElementById('count').textContent = data.error; return; }
  for (const item of data.restaurants) {
    const li = el('li'); const b = el('button', '', item.name);
    b.dataset.id = item.business_id;
    b.append(el('div', 'muted', item.n_groups + (item.n_groups === 1 ? ' group' : ' groups')));
    b.onclick = () => show(item.business_id, b);
    li.append(b); list.append(li);
  }
  document.getElementById('count').textContent = data.restaurants.length + ' of ' + data.total + ' restaurants';
}

async function show(id, button) {
  document.querySelectorAll('#restaurants button').forEach(b => b.classList.remove('selected'));
  if (button) button.classList.add('selected');
  const [ok, data] = await getJson('/api/restaurant?id=' + encodeURIComponent(id));
  const title = document.getElementById('restaurant-name');
  title.textContent = ok ? data.name : data.error;
  title.className = ok ? '' : 'error';
  const groups = document.getElementById('groups');
  groups.replaceChildren();
  for (const g of (ok && data.groups) || []) {
    const card = el('div', 'card group' + (g.enough_reviews ? '' : ' too-few'));
    card.dataset.group = g.group;
    const name = el('abbr', '', g.label || g.group);
    name.title = 'group code: ' + g.group;
    const h = el('h3'); h.append(name); card.append(h);
    const meta = [];
    meta.push(g.n_reviews === null ? 'reviews: unknown' : g.n_reviews + (g.n_reviews === 1 ? ' review' : ' reviews'));
    if (g.group_confidence !== null) meta.push('confidence ' + Math.round(g.group_confidence * 100) + '%');
    card.append(el('div', 'meta', meta.join(' · ')));
    card.append(el('p', 'summary', g.enough_reviews ? g.summary : 'Not enough reviews for a summary.'));
    if (g.distinctive_terms && g.distinctive_terms.length) {
      const box = el('div', 'contrast');
      box.append(el('h4', '', 'Mentioned more by this group than by the others'));
      const list = el('ul', 'terms');
      for (const t of g.distinctive_terms) { const li = el('li', '', t.term); li.title = 'z = ' + t.z.toFixed(1); list.append(li); }
      box.append(list);
      for (const q of g.quotes || []) { box.append(el('blockquote', '', '\u201c' + q.text + '\u201d')); }
      card.append(box);
    }
    groups.append(card);
  }
}

getJson('/api/about').then(([ok, data]) => { if (ok) document.getElementById('about').textContent = data.text; });
document.getElementById('search').addEventListener('input', e => search(e.target.value));
document.getElementById('own-submit').onclick = async () => {
  const out = document.getElementById('own-result');
  const reviews = document.getElementById('own-reviews').value.split(/\\n\\s*\\n/).map(s => s.trim()).filter(Boolean);
  out.className = ''; out.textContent = 'Summarizing...';
  const [ok, data] = await getJson('/summarize', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                 body: JSON.stringify({reviews})});
  if (ok) { out.textContent = data.summary; }
  else { out.className = 'error'; out.textContent = data.error; }
};
search('');
</script>
</body>
</html>
"""
