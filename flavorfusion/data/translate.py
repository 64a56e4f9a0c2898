"""Translation of review texts (`translate=none|google`, conf/translate/<name>.yaml).

One small interface, `Translator.translate(texts) -> texts`, so a test can swap in a fake and nothing
else changes. `CachedTranslator` holds what every paid backend needs: a persistent on-disk cache keyed
by (text, target language), so an interrupted or repeated run never pays for the same text twice;
batching; and a dry run that only counts the characters still to translate and estimates the cost.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from flavorfusion.errors import ConfigError, FlavorFusionError


class Translator(ABC):
    """Translates a list of texts into `target_language`, preserving order and length."""

    #: False for the no-op translator: outputs then keep the original text and no `originals` column
    enabled: bool = True
    dry_run: bool = False
    target_language: str = "en"

    @abstractmethod
    def translate(self, texts: list[str]) -> list[str]: ...

    def details(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        """Release what the translator holds open (its cache)."""
        return None


class NoTranslation(Translator):
    """`translate=none`: texts stay as they are."""

    enabled = False

    def translate(self, texts: list[str]) -> list[str]:
        return list(texts)


class TranslationCache:
    """sqlite file mapping sha256(target language, text) -> translation; committed after every batch."""

    _LOOKUP_CHUNK = 500  # sqlite's default limit on bound parameters is 999 (older builds)

    def __init__(self, path: str):
        self.path = os.path.expanduser(path)
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS translations (key BLOB PRIMARY KEY, translation TEXT NOT NULL)"
            )
        except (OSError, sqlite3.Error) as err:
            raise ConfigError(f"translate.cache_path: cannot open {self.path}: {err}") from None

    @staticmethod
    def key(text: str, target_language: str) -> bytes:
        return hashlib.sha256(f"{target_language}\0{text}".encode()).digest()

    def get_many(self, texts: Iterable[str], target_language: str) -> dict[str, str]:
        keyed = {self.key(t, target_language): t for t in texts}
        keys = list(keyed)
        found: dict[str, str] = {}
        for start in range(0, len(keys), self._LOOKUP_CHUNK):
            chunk = keys[start : start + self._LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, translation FROM translations WHERE key IN ({marks})", chunk
            )
            found.update((keyed[key], translation) for key, translation in rows)
        return found

    def put_many(self, pairs: Iterable[tuple[str, str]], target_language: str) -> None:
        with self._db:  # one transaction: a batch is stored whole or not at all
            self._db.executemany(
                "INSERT OR REPLACE INTO translations (key, translation) VALUES (?, ?)",
                ((self.key(text, target_language), translation) for text, translation in pairs),
            )

    def close(self) -> None:
        self._db.close()


class CachedTranslator(Translator):
    """Cache, batching and dry run around a backend's `_translate_batch`."""

    def __init__(
        self,
        target_language: str = "en",
        cache_path: str = "~/.cache/flavorfusion/translations.sqlite",
        batch_size: int = 128,
        max_chars_per_request: int = 30_000,
        dry_run: bool = False,
        price_per_million_chars: float = 20.0,
    ):
        self.target_language = str(target_language)
        self.batch_size = int(batch_size)
        self.max_chars_per_request = int(max_chars_per_request)
        self.dry_run = bool(dry_run)
        self.price_per_million_chars = float(price_per_million_chars)
        self.cache = TranslationCache(cache_path)
        self.stats: Counter = Counter()
        # texts already counted by a dry run, so a text repeated across batches is priced once
        self._counted: set[bytes] = set()

    @abstractmethod
    def _translate_batch(self, texts: list[str]) -> list[str]:
        """Translate one request's worth of texts (the backend call)."""

    def translate(self, texts: list[str]) -> list[str]:
        unique = list(dict.fromkeys(t for t in texts if t))
        done = self.cache.get_many(unique, self.target_language)
        missing = [t for t in unique if t not in done]
        self.stats["texts"] += len(unique)
        self.stats["cache_hits"] += len(done)
        if self.dry_run:
            for text in missing:
                key = TranslationCache.key(text, self.target_language)
                if key not in self._counted:
                    self._counted.add(key)
                    self.stats["pending_texts"] += 1
                    self.stats["pending_chars"] += len(text)
            return list(texts)
        for batch in self._batches(missing):
            translated = self._translate_batch(batch)
            if len(translated) != len(batch):
                raise FlavorFusionError(
                    f"translator returned {len(translated)} texts for a batch of {len(batch)}"
                )
            self.cache.put_many(zip(batch, translated, strict=True), self.target_language)
            done.update(zip(batch, translated, strict=True))
            self.stats["requests"] += 1
            self.stats["chars_sent"] += sum(len(t) for t in batch)
        return [done[t] if t else t for t in texts]

    def _batches(self, texts: list[str]) -> Iterator[list[str]]:
        """At most `batch_size` texts and `max_chars_per_request` characters per request (a longer
        single text goes alone)."""
        batch: list[str] = []
        chars = 0
        for text in texts:
            if batch and (len(batch) == self.batch_size or chars + len(text) > self.max_chars_per_request):
                yield batch
                batch, chars = [], 0
            batch.append(text)
            chars += len(text)
        if batch:
            yield batch

    def estimated_cost(self, chars: int) -> float:
        return chars / 1e6 * self.price_per_million_chars

    def details(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": type(self).__name__,
            "target_language": self.target_language,
            "cache_path": self.cache.path,
            "dry_run": self.dry_run,
            **dict(sorted(self.stats.items())),
        }
        chars = self.stats["pending_chars"] if self.dry_run else self.stats["chars_sent"]
        out["estimated_cost_usd"] = round(self.estimated_cost(chars), 4)
        out["price_per_million_chars"] = self.price_per_million_chars
        return out

    def close(self) -> None:
        self.cache.close()


class GoogleTranslator(CachedTranslator):
    """Google Cloud Translation (v3, `translate_text`), retried with exponential backoff on transient
    errors (429, 5xx, connection resets).

    Credentials come from Application Default Credentials (`gcloud auth application-default login`,
    or GOOGLE_APPLICATION_CREDENTIALS pointing at a key file): never from the command line.
    """

    def __init__(
        self,
        project_id: str | None = None,
        location: str = "global",
        source_language: str | None = None,
        model: str | None = None,
        timeout_s: float = 60.0,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
        retry_deadline_s: float = 600.0,
        **cached: Any,
    ):
        super().__init__(**cached)
        self.project_id = project_id or os.environ.get("GOOGLE_CLOUD_PROJECT")
        self.location = location
        self.source_language = source_language
        self.model = model
        self.timeout_s = float(timeout_s)
        self.backoff = (float(backoff_initial_s), float(backoff_max_s), float(retry_deadline_s))
        self._client = None

    def _make_client(self):
        """The one seam to Google's client library (tests replace it with a fake)."""
        try:
            from google.cloud import translate_v3
        except ImportError:
            raise ConfigError(
                "translate=google needs google-cloud-translate: pip install 'flavorfusion[gcp]'"
            ) from None
        from google.auth.exceptions import DefaultCredentialsError

        try:
            return translate_v3.TranslationServiceClient()
        except DefaultCredentialsError:
            raise ConfigError(
                "translate=google found no Google Cloud credentials: run "
                "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None

    def _translate_batch(self, texts: list[str]) -> list[str]:
        from google.api_core import exceptions
        from google.api_core.retry import Retry, if_transient_error

        if not self.project_id:
            raise ConfigError("translate=google needs translate.project_id (or GOOGLE_CLOUD_PROJECT)")
        if self._client is None:
            self._client = self._make_client()
        request: dict[str, Any] = {
            "parent": f"projects/{self.project_id}/locations/{self.location}",
            "contents": texts,
            "mime_type": "text/plain",
            "target_language_code": self.target_language,
        }
        if self.source_language:
            request["source_language_code"] = self.source_language
        if self.model:
            request["model"] = self.model
        initial, maximum, deadline = self.backoff
        retry = Retry(
            predicate=if_transient_error, initial=initial, maximum=maximum, multiplier=2.0, timeout=deadline
        )
        try:
            response = retry(self._client.translate_text)(request=request, timeout=self.timeout_s)
        except (exceptions.GoogleAPICallError, exceptions.RetryError) as err:
            # what was translated so far is in the cache; a rerun continues from there
            raise FlavorFusionError(f"Google Cloud Translation failed: {err}") from None
        return [t.translated_text for t in response.translations]
