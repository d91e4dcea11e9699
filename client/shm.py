"""System shared memory between `slamctl infer --shm` and a server on the same host.

Two regions per run, registered once with the server: `images`, one slot per encoder
request in flight (the pixel path's uint8 batches; the encoded path sends the files' few
bytes over gRPC), and `embeddings`, one bag's (max bag x D) float32 rows. The encoder
writes each batch's embeddings at its cells' offset, and the aggregator reads the bag
from there: the embeddings never pass through the client's memory.

The regions are unregistered and unlinked on every way out (`close`, also on Ctrl-C; a
server that died cannot be told, the segments go anyway). Their names carry the client's
pid: a run removes the segments and registrations that a killed client left behind.
Python's resource tracker also unlinks the segments of a client killed with SIGKILL.
The regions are `multiprocessing.shared_memory` segments (what tritonclient's
shared_memory utilities wrap), used directly so that `close` can unlink a segment while a
view of it is still referenced.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from slamctl import contract, segments
from slamctl.errors import SlamError

PREFIX = "slamctl_client_"  # region names and /dev/shm keys: slamctl_client_<pid>_<random>_<role>
IN_USE = "it is currently in use"  # Triton's refusal to unregister a region a request still uses


def remove_stale(
    client: grpcclient.InferenceServerClient, headers: dict[str, str], timeout: float
) -> list[str]:
    """Unregister the server's regions and unlink the segments of clients that no longer
    run; returns their names."""
    removed = []
    status = client.get_system_shared_memory_status(headers=headers, client_timeout=timeout)
    for name in status.regions:
        if segments.owner_gone(name, PREFIX, "_"):
            client.unregister_system_shared_memory(name, headers=headers, client_timeout=timeout)
            removed.append(name)
    return removed + [path.name for path in segments.remove_orphans(PREFIX, "_")]


class SharedRegions:
    """The run's two regions, registered with the server until `close`."""

    def __init__(
        self,
        client: grpcclient.InferenceServerClient,
        headers: dict[str, str],
        *,
        slots: int,
        slot_bytes: int,
        max_cells: int,
        dim: int,
        timeout: float,
    ) -> None:
        self.client, self.headers, self.timeout = client, headers, timeout
        self.slot_bytes, self.dim = slot_bytes, dim
        tag = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self.images_name, self.embeddings_name = f"{tag}_images", f"{tag}_embeddings"
        self._segments: dict[str, SharedMemory] = {}
        self._registered: list[str] = []
        try:
            self._open(self.images_name, max(1, slots * slot_bytes))
            self._open(self.embeddings_name, max_cells * dim * 4)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str, size: int) -> None:
        # sparse: pages exist once written, so a 20,000-cell region costs what a bag uses
        self._segments[name] = SharedMemory(name, create=True, size=size)
        try:
            self.client.register_system_shared_memory(
                name, "/" + name, size, headers=self.headers, client_timeout=self.timeout
            )
        except InferenceServerException as e:
            raise SlamError(
                f"--shm: the server refused to register shared memory ({e.message()}): "
                "is it a `slamctl serve` on this host?"
            ) from None
        self._registered.append(name)

    def _unregister(self, name: str, deadline: float) -> None:
        while True:
            try:
                self.client.unregister_system_shared_memory(
                    name, headers=self.headers, client_timeout=max(deadline - time.monotonic(), 0.1)
                )
                return
            except InferenceServerException as e:
                if IN_USE not in (e.message() or "") or time.monotonic() > deadline:
                    return
                time.sleep(0.02)

    def write_images(self, slot: int, batch: np.ndarray) -> int:
        """Copy one request's images into its slot; returns the slot's offset in the region."""
        if batch.nbytes > self.slot_bytes:
            raise ValueError(f"batch of {batch.nbytes} bytes exceeds the slot of {self.slot_bytes}")
        offset = slot * self.slot_bytes
        buffer = self._segments[self.images_name].buf[offset : offset + batch.nbytes]
        np.frombuffer(buffer, dtype=batch.dtype).reshape(batch.shape)[...] = batch
        buffer.release()
        return offset

    def embeddings_output(self, start: int, n: int) -> grpcclient.InferRequestedOutput:
        """The encoder's EMBEDDINGS output for cells start..start+n, written to their rows."""
        out = grpcclient.InferRequestedOutput(contract.EMBEDDINGS)
        out.set_shared_memory(self.embeddings_name, n * self.dim * 4, offset=start * self.dim * 4)
        return out

    def embeddings(self, n: int) -> np.ndarray:
        """A view of the first n rows (N, D); let go of it before `close`."""
        return np.ndarray((n, self.dim), np.float32, buffer=self._segments[self.embeddings_name].buf)

    def close(self) -> None:
        """Unregister and unlink both. After Ctrl-C the interrupted bag's requests may still
        run on the server, which refuses to unregister a region they use: that is retried
        until they end, for 5 s at most. A dead server cannot be told and is not waited for;
        a region left registered is removed by the next run (`remove_stale`)."""
        deadline = time.monotonic() + min(self.timeout, 5.0)
        for name in self._registered:
            self._unregister(name, deadline)
        self._registered = []
        for segment in self._segments.values():
            with contextlib.suppress(BufferError):  # a view still referenced: unmapped at exit
                segment.close()
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()
        self._segments = {}
