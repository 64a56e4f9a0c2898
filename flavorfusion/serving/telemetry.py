"""What the server counts, as Prometheus series on `/metrics`: every response by route and status (refusals of the
connection layer included, under `route="unrouted"` when no route was parsed), latency, batch sizes, model loads,
queue depth, queue refusals, generation failures and connections closed to make room."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# the route label of a response to a request that never reached a route (malformed, refused at connection)
UNROUTED = "unrouted"


class Telemetry:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("flavorfusion_requests", "HTTP responses by route and status (499: the client "
                                "left first)", ["route", "status"], registry=self.registry)
        self.latency = Histogram("flavorfusion_request_latency_seconds", "Request latency by route and status",
                                 ["route", "status"], registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch_size = Histogram("flavorfusion_batch_size", "Items per generate call", ["variant"],
                                    registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.model_loads = Counter("flavorfusion_model_loads", "Model loads by variant (one per process)",
                                   ["variant"], registry=self.registry)
        self.queue_depth = Gauge("flavorfusion_queue_depth", "Items waiting for a batch", ["variant"],
                                 registry=self.registry)
        self.rejected = Counter("flavorfusion_queue_full", "Requests refused because the queue was full",
                                ["variant"], registry=self.registry)
        self.failed_items = Counter("flavorfusion_generation_failures", "Items whose generation failed (alone)",
                                    ["variant"], registry=self.registry)
        self.dropped_items = Counter("flavorfusion_abandoned_items", "Items dropped before generation because "
                                     "their client had left", ["variant"], registry=self.registry)
        self.evicted = Counter("flavorfusion_idle_connections_closed", "Idle keep-alive connections closed to make "
                               "room for a new one (serve.max_connections)", registry=self.registry)
        self.connections = Gauge("flavorfusion_open_connections", "Open HTTP connections", registry=self.registry)

    def count(self, route: str, status: int | str, seconds: float = 0.0) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route, str(status)).observe(seconds)
