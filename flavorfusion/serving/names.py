"""Readable names of the group labels `prepare` writes: ISO 639-1 codes for `grouping=language` (the languages
of conf/source/google_local.yaml) and the census labels for `grouping=surname`. A label not listed shows as
itself; the page keeps the code in a tooltip."""

LANGUAGES = {
    "ar": "Arabic", "bn": "Bengali", "de": "German", "el": "Greek", "en": "English", "es": "Spanish",
    "fa": "Persian", "fr": "French", "gu": "Gujarati", "he": "Hebrew", "hi": "Hindi", "hy": "Armenian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "pa": "Punjabi", "pl": "Polish", "pt": "Portuguese",
    "ru": "Russian", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "uk": "Ukrainian", "ur": "Urdu",
    "vi": "Vietnamese", "zh": "Chinese",
}
SURNAME_TRADITIONS = {  # flavorfusion.data.grouping.CENSUS_LABELS' values: U.S. census categories
    "white": "White (census surname estimate)", "black": "Black (census surname estimate)",
    "asian_pacific_islander": "Asian / Pacific Islander (census surname estimate)",
    "american_indian_alaska_native": "American Indian / Alaska Native (census surname estimate)",
    "multiracial": "Multiracial (census surname estimate)", "hispanic": "Hispanic (census surname estimate)",
}
OTHER = {"all": "All reviews", "unknown": "Unidentified"}


def group_name(label: str) -> str:
    """The name a person reads for a group label ('ko' -> 'Korean'); the label itself when unknown."""
    return LANGUAGES.get(label) or SURNAME_TRADITIONS.get(label) or OTHER.get(label) or label
