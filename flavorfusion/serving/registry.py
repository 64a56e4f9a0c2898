"""The served variants by name, each with its batcher (on `app.state.variants`); the first is the default."""

from __future__ import annotations

from dataclasses import dataclass

from flavorfusion.config.serve import ServerConf
from flavorfusion.serving.batcher import Batcher
from flavorfusion.serving.errors import ApiError
from flavorfusion.serving.telemetry import Telemetry
from flavorfusion.serving.variants import LoadedModel, VariantSource


@dataclass
class Variant:
    source: VariantSource
    batcher: Batcher
    loaded: LoadedModel | None = None
    loads: int = 0


class VariantRegistry:
    def __init__(self, sources: list[VariantSource], server: ServerConf, telemetry: Telemetry):
        self.default = sources[0].name
        self.variants: dict[str, Variant] = {s.name: self._make(s, server, telemetry) for s in sources}

    @staticmethod
    def _make(source: VariantSource, server: ServerConf, telemetry: Telemetry) -> Variant:
        variant = Variant(source, None)  # type: ignore[arg-type]

        def generate(features: list) -> list[str]:
            return variant.loaded.generate(features)

        variant.batcher = Batcher(generate, server.max_batch_size, server.batch_timeout_ms, server.max_queue,
                                  on_batch=telemetry.batch_size.labels(source.name).observe,
                                  on_abandoned=telemetry.dropped_items.labels(source.name).inc)
        telemetry.queue_depth.labels(source.name).set_function(lambda: variant.batcher.depth)
        return variant

    def get(self, name: str | None) -> Variant:
        name = self.default if name is None else name
        variant = self.variants.get(name)
        if variant is None:
            raise ApiError(400, f"variant {name!r} is not served here; the variants are: {', '.join(self.variants)}")
        return variant

    def waiting(self) -> list[str]:
        return [name for name, v in self.variants.items() if v.loaded is None]

    def __iter__(self):
        return iter(self.variants.values())
