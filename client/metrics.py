"""Every Prometheus metric of the client, defined once.

Label values never carry a bag, slide or patient identifier: only the model name, a
status and an error kind, so a dashboard can be shared outside the hospital.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

# 1 ms .. ~30 s: single requests on a GPU up to large bags on a CPU
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

REQUEST_LATENCY = Histogram(
    "slamctl_request_latency_seconds",
    "Latency of one inference request, seen by the client",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BAG_LATENCY = Histogram(
    "slamctl_bag_latency_seconds",
    "Wall time of one bag, from its first image read to its report written",
    buckets=BAG_BUCKETS,
    registry=REGISTRY,
)
CELLS = Counter("slamctl_cells_total", "Cells sent to the encoder", registry=REGISTRY)
BAGS = Counter("slamctl_bags_total", "Bags finished, by status (ok or failed)", ["status"], registry=REGISTRY)
ERRORS = Counter(
    "slamctl_errors_total",
    "Errors by kind (unreadable_image, timeout, unavailable, server_error)",
    ["kind"],
    registry=REGISTRY,
)
