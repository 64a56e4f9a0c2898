"""Writes flavorfusion/resources/quickstart_reviews.jsonl: small synthetic restaurant review groups with
reference summaries, written by the project so the quickstart and the tests need no download.

Each restaurant has a cuisine, a signature dish and four aspects (food, service, price, ambiance);
its reviews mention the aspects in varied words and its summary states the consensus, so a model
can learn the mapping in a few CPU minutes. Run: python scripts/make_quickstart_data.py
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "flavorfusion" / "resources" / "quickstart_reviews.jsonl"

CUISINES = {
    "Mexican": ["tacos al pastor", "mole enchiladas", "carnitas", "churros"],
    "Italian": ["margherita pizza", "carbonara", "lasagna", "tiramisu"],
    "Japanese": ["ramen", "salmon sushi", "katsu curry", "gyoza"],
    "Indian": ["butter chicken", "lamb biryani", "palak paneer", "garlic naan"],
    "Thai": ["pad thai", "green curry", "tom yum soup", "mango sticky rice"],
    "Korean": ["bibimbap", "fried chicken", "bulgogi", "kimchi stew"],
    "Ethiopian": ["doro wat", "injera platter", "lentil stew", "tibs"],
    "Lebanese": ["shawarma", "falafel", "hummus", "baklava"],
}
NAMES = ["Casa", "Little", "Golden", "Blue", "Old Town", "Corner", "Lucky", "Garden", "River", "Sunset"]
GROUPS = ["en", "es", "zh", "ko", "hi"]

ASPECTS = {
    "food": {
        "good": (["The {dish} was delicious.", "Loved the {dish}, full of flavor.", "Best {dish} I have had in years.",
                  "The {dish} was fresh and tasty."], "the {dish} is delicious"),
        "bad": (["The {dish} was bland.", "Sadly the {dish} was cold and dry.", "The {dish} had no flavor at all.",
                 "Disappointing {dish}, too salty."], "the {dish} is disappointing"),
    },
    "service": {
        "good": (["Staff were friendly and quick.", "Our server was attentive and kind.",
                  "Service was fast and welcoming."], "the staff are friendly"),
        "bad": (["We waited forever for our order.", "The staff seemed rude and slow.",
                 "Service was slow and careless."], "the service is slow"),
    },
    "price": {
        "good": (["Prices are very fair.", "Great value for the money.", "Cheap and generous portions."],
                 "prices are fair"),
        "bad": (["Way too expensive for what you get.", "Overpriced for small portions.",
                 "The bill was higher than expected."], "it is overpriced"),
    },
    "ambiance": {
        "good": (["Cozy place with nice music.", "The room is warm and relaxing.", "Lovely quiet atmosphere."],
                 "the place feels cozy"),
        "bad": (["It was very loud and crowded.", "The dining room felt noisy and cramped.",
                 "Too noisy to hold a conversation."], "the room is noisy"),
    },
}
FILLER = ["We came for a birthday.", "Parking was easy.", "I came here with my family.", "Went on a Friday night.",
          "We will be back.", "First time trying this place.", "Came for lunch with coworkers."]


def restaurant(rng: random.Random, index: int) -> dict:
    cuisine = rng.choice(sorted(CUISINES))
    dish = rng.choice(CUISINES[cuisine])
    verdicts = {aspect: rng.choice(["good", "bad"]) for aspect in ASPECTS}
    reviews = []
    for _ in range(rng.randint(6, 12)):
        sentences = [rng.choice(FILLER)]
        for aspect in rng.sample(sorted(ASPECTS), k=rng.randint(2, 4)):
            # most reviewers agree with the consensus, a few do not
            verdict = verdicts[aspect] if rng.random() < 0.85 else ("bad" if verdicts[aspect] == "good" else "good")
            sentences.append(rng.choice(ASPECTS[aspect][verdict][0]).format(dish=dish))
        rng.shuffle(sentences)
        reviews.append(" ".join(sentences))
    parts = [ASPECTS[a][verdicts[a]][1].format(dish=dish) for a in ("food", "service", "price", "ambiance")]
    summary = (f"A {cuisine} restaurant where {parts[0]} and {parts[1]}. "
               f"Reviewers say {parts[2]} and {parts[3]}.")
    name = f"{rng.choice(NAMES)} {cuisine} Kitchen {index}"
    return {"id": f"qs-{index:03d}", "business_id": f"qs-business-{index:03d}", "name": name,
            "group": rng.choice(GROUPS), "reviews": reviews, "summary": summary}


def main() -> None:
    rng = random.Random(2026)
    records = [restaurant(rng, i) for i in range(160)]
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    print(f"wrote {len(records)} review groups to {OUT}")


if __name__ == "__main__":
    main()
