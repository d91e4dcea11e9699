"""The encoder's stream of async batched requests for one bag: at most `--concurrency` in
flight, their embeddings written into one array (or, with --shm, into the run's shared
region), the first failure kept for the bag. No torch."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING

import numpy as np
import tritonclient.grpc as grpcclient

from slamctl import contract
from slamctl.client import metrics
from slamctl.client.channel import failure_kind
from slamctl.client.results import BagFailure

if TYPE_CHECKING:
    from slamctl.client.triton import TritonModels


DRAIN_SECONDS = 5.0  # on Ctrl-C, how long the requests in flight may take to finish


class EncoderStream:
    """Bounded in-flight async encoder requests writing into one embeddings array.

    Used as a context manager: leaving it on Ctrl-C waits (briefly) for the requests in
    flight, since closing a channel with calls in flight can hang."""

    def __init__(self, models: TritonModels, n_cells: int) -> None:
        self.models, self.settings, self.shared = models, models.settings, models.shared
        if self.shared is not None:  # the server writes them into the shared region
            self.embeddings = self.shared.embeddings(n_cells)
        else:
            self.embeddings = np.empty((n_cells, models.dim), dtype=np.float32)
        self.errors = [""] * n_cells  # the encoded path: why the server could not decode a file
        self.slots = queue.Queue()  # a request in flight holds one (its shared-memory slot)
        for slot in range(self.settings.concurrency):
            self.slots.put(slot)
        self.cond = threading.Condition()
        self.pending = 0
        self.failure: BagFailure | None = None

    def __enter__(self) -> EncoderStream:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is KeyboardInterrupt:
            self.drain(min(self.settings.timeout, DRAIN_SECONDS))

    def submit(self, start: int, batch: np.ndarray) -> None:
        """One request for the cells from `start`: uint8 images (the pixel path), or an (n, 1)
        object array of the files' bytes (the encoded path); gRPC retries it (client/channel.py)."""
        slot = self.slots.get()  # blocks while `concurrency` requests are in flight
        with self.cond:
            self.pending += 1
        if batch.dtype == np.object_:
            model, outputs = contract.FILE_ENCODER, [contract.EMBEDDINGS, contract.CELL_ERRORS]
            (spec,) = contract.file_encoder_inputs()
        else:
            model, outputs = self.settings.encoder_model, [contract.EMBEDDINGS]
            (spec,) = contract.encoder_inputs(self.models.size)
        inp = grpcclient.InferInput(spec.name, list(batch.shape), spec.wire_dtype)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        if self.shared is None:
            inp.set_data_from_numpy(batch)
        else:  # the embeddings go straight to their rows of the shared region
            requested[0] = self.shared.embeddings_output(start, len(batch))
            if batch.dtype == np.object_:  # a file's bytes are few: over gRPC
                inp.set_data_from_numpy(batch)
            else:
                inp.set_shared_memory(
                    self.shared.images_name, batch.nbytes, self.shared.write_images(slot, batch)
                )
        t0 = time.perf_counter()
        try:
            self.models.client.async_infer(
                model,
                [inp],
                callback=lambda result=None, error=None: self._done(start, batch, slot, t0, result, error),
                outputs=requested,
                client_timeout=self.settings.timeout,
            )
        except BaseException:  # not sent (Ctrl-C while sending): no callback will count it done
            with self.cond:
                self.pending -= 1
                self.cond.notify_all()
            self.slots.put(slot)
            raise

    def _done(self, start, images, slot, t0, result, error) -> None:
        if error is not None:  # after gRPC's retries
            kind = failure_kind(str(error.status()))
            metrics.ERRORS.labels(kind).inc()
            failure = BagFailure(kind, f"{self.settings.encoder_model}: {error.message()}")
        else:
            metrics.REQUEST_LATENCY.labels(self.settings.encoder_model).observe(time.perf_counter() - t0)
            if self.shared is None:
                self.embeddings[start : start + len(images)] = result.as_numpy(contract.EMBEDDINGS)
            if images.dtype == np.object_:
                reasons = result.as_numpy(contract.CELL_ERRORS).reshape(-1)
                self.errors[start : start + len(images)] = [r.decode() for r in reasons]
            failure = None
        with self.cond:
            self.pending -= 1
            if failure is not None and self.failure is None:
                self.failure = failure
            self.cond.notify_all()
        self.slots.put(slot)

    def wait(self) -> None:
        """Until every request is answered; the bag's first failure, if any, is raised."""
        self.drain(None)
        if self.failure is not None:
            raise self.failure

    def drain(self, timeout: float | None) -> None:
        """Wait (at most `timeout` s; None: without limit) until no request is in flight."""
        with self.cond:
            self.cond.wait_for(lambda: self.pending == 0, timeout=timeout)

    def take(self, n: int) -> np.ndarray:
        """The first n embeddings but those of files the server could not decode; the stream
        lets go of them (so they can be freed)."""
        embeddings, self.embeddings = self.embeddings[:n], None
        failed = [i for i, e in enumerate(self.errors[:n]) if e]
        if not failed:
            return embeddings
        if self.shared is None:
            return np.delete(embeddings, failed, axis=0)
        keep = np.delete(np.arange(n), failed)  # compacted in place: the region stays the bag's
        embeddings[: len(keep)] = embeddings[keep]
        return embeddings[: len(keep)]
