"""`source.language_id`: the language of the text a Google Local review was translated from, identified offline.

It fills the `languages` provenance column of `source=google_local` and is what `grouping=language` groups by.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from flavorfusion.errors import ConfigError

# lingua's confidence for a text can differ in the last bit with the batch it is computed in; rounded,
# it is the same whatever the batching (engine=local identifies all texts at once, engine=beam per batch)
CONFIDENCE_DIGITS = 6


class LanguageIdentifier:
    """Identifies the language of original (pre-translation) review texts with lingua, offline.

    lingua ships its n-gram models inside the wheel, so nothing is downloaded. All 75 languages in high-accuracy
    mode hold the most models in memory; `languages` (ISO 639-1 codes) or `low_accuracy=true` (weaker on short
    texts) hold fewer (docs/prepare.md has the measured sizes).
    """

    def __init__(
        self, languages: list[str] | None = None, low_accuracy: bool = False, batch_size: int = 10_000
    ):
        self.languages = [str(code).lower() for code in languages] if languages else None
        self.low_accuracy = bool(low_accuracy)
        self.batch_size = int(batch_size)
        self._codes = self._iso_codes()  # checked now, not after a long read
        self._detector = None

    def _iso_codes(self) -> list | None:
        try:
            from lingua import IsoCode639_1
        except ImportError:
            raise ConfigError(
                "language identification needs lingua: pip install 'flavorfusion[prepare]' "
                "(or source.language_id=null)"
            ) from None
        if self.languages is None:
            return None
        if len(self.languages) < 2:
            raise ConfigError("source.language_id.languages needs at least two languages (or null for all)")
        codes, unknown = [], []
        for code in self.languages:
            try:
                codes.append(IsoCode639_1.from_str(code))
            except ValueError:
                unknown.append(code)
        if unknown:
            raise ConfigError(
                f"source.language_id.languages: lingua knows no language with ISO 639-1 code {', '.join(unknown)}"
            )
        return codes

    def _build(self):
        from lingua import LanguageDetectorBuilder

        if self._codes is None:
            builder = LanguageDetectorBuilder.from_all_languages()
        else:
            builder = LanguageDetectorBuilder.from_iso_codes_639_1(*self._codes)
        if self.low_accuracy:
            builder = builder.with_low_accuracy_mode()
        return builder.build()

    def identify(
        self, texts: list[str], progress: bool = True
    ) -> tuple[list[str | None], list[float], list[float]]:
        """(ISO 639-1 code or None, confidence in [0, 1], margin) for each text: the margin is the
        top language's confidence minus the second one's, what `grouping=language` needs to tell a
        clear answer from a near tie."""
        if not texts:
            return [], [], []
        if self._detector is None:
            self._detector = self._build()
        codes: list[str | None] = []
        confidences: list[float] = []
        margins: list[float] = []
        with tqdm(
            total=len(texts), desc="language id", unit=" texts", disable=None if progress else True
        ) as bar:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                for values in self._detector.compute_language_confidence_values_in_parallel(batch):
                    # values are sorted, most likely first; empty when no language fits at all
                    top = values[0] if values else None
                    if top is None or top.value <= 0.0:
                        codes.append(None)
                        confidences.append(0.0)
                        margins.append(0.0)
                        continue
                    first = round(float(top.value), CONFIDENCE_DIGITS)
                    second = round(float(values[1].value), CONFIDENCE_DIGITS) if len(values) > 1 else 0.0
                    codes.append(top.language.iso_code_639_1.name.lower())
                    confidences.append(first)
                    margins.append(round(first - second, CONFIDENCE_DIGITS))
                bar.update(len(batch))
        return codes, confidences, margins
