"""One bag through the served models: its cells decoded (or read) and streamed to the encoder,
their embeddings aggregated, the decision made against the threshold. Raises BagFailure; the
run loop (client/run.py) records it and goes on. No torch.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from slamctl.client import metrics
from slamctl.client.bags import decoded, input_digest, list_cells
from slamctl.client.encoder_stream import EncoderStream
from slamctl.client.results import BagFailure, BagResult
from slamctl.client.triton import TritonModels


def infer_bag(
    bag: Path,
    models: TritonModels,
    pool: ThreadPoolExecutor,
    *,
    threshold: float | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> BagResult:
    """Embed every readable cell of one bag, aggregate, decide. Raises BagFailure."""
    t_start = time.perf_counter()
    try:
        files, not_cells = list_cells(bag)
    except OSError as e:
        raise BagFailure("unreadable_bag", f"{bag}: cannot list the folder ({e.strerror})") from None
    if models.max_bag is not None and len(files) > models.max_bag:
        raise BagFailure(
            "too_large",
            f"{bag}: {len(files)} files, the server accepts bags of at most {models.max_bag} cells",
        )
    batch_size = models.batch_size
    names, skipped, batch, digests = [], list(not_cells), [], []
    lookahead = batch_size * (models.settings.concurrency + 1)
    raw = models.settings.wire == "encoded"  # the files' bytes go to the server, which decodes them
    with EncoderStream(models, len(files)) as stream:
        for name, image, reason, digest in decoded(
            bag, files, models.image_size, models.size, pool, lookahead, raw=raw
        ):
            digests.append((name, digest))
            if image is None:
                skipped.append((name, reason))
                metrics.ERRORS.labels("unreadable_image").inc()
                continue
            batch.append(image)
            names.append(name)
            if len(batch) == batch_size:
                stream.submit(len(names) - len(batch), stacked(batch))
                batch = []
                if on_batch:
                    on_batch(len(names) + len(skipped) - len(not_cells), len(files))
            if stream.failure is not None:
                break
        if batch and stream.failure is None:
            stream.submit(len(names) - len(batch), stacked(batch))
        stream.wait()
        embeddings = stream.take(len(names))  # without the rows of files the server could not decode
    if on_batch:
        on_batch(len(files), len(files))
    for name, why in zip(names, stream.errors):
        if why:
            skipped.append((name, why))
            metrics.ERRORS.labels("unreadable_image").inc()
    names = [name for name, why in zip(names, stream.errors) if not why]
    if not names:
        raise BagFailure("unreadable_image", f"{bag}: no readable cell image ({len(skipped)} files skipped)")
    metrics.CELLS.inc(len(names))
    t_embed = time.perf_counter()
    request = models.aggregator_request(embeddings)
    del embeddings  # from here the request holds the only copy
    probs, attention = models.aggregate(request)
    if not (np.isfinite(probs).all() and np.isfinite(attention).all()):  # never a NaN decision
        metrics.ERRORS.labels("invalid_output").inc()
        raise BagFailure(
            "invalid_output",
            f"{models.settings.aggregator_model}: non-finite output (BAG_PROBS {probs.tolist()}): "
            "an embedding was NaN or infinite",
        )
    t_end = time.perf_counter()
    timings = {"embed_s": t_embed - t_start, "aggregate_s": t_end - t_embed, "total_s": t_end - t_start}
    return BagResult(
        bag.name,
        float(probs[1]),
        *models.decision_threshold(threshold),
        names,
        attention,
        skipped,
        timings,
        input_sha256=input_digest(digests),
        decided_at=utc_now(),
    )


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def stacked(batch: list) -> np.ndarray:
    """One request's tensor: images stacked (pixel path), or the files' bytes as an (n, 1)
    object array (encoded path)."""
    if isinstance(batch[0], np.ndarray):
        return np.stack(batch)
    files = np.empty((len(batch), 1), dtype=np.object_)
    files[:, 0] = batch
    return files
