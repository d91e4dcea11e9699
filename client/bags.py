"""Bags on disk for the client: finding them under the paths a user gives, listing their
cells, and decoding cells ahead of the requests in a thread pool with a bounded look-ahead,
so decoding and inference overlap while memory stays bounded whatever the bag size."""

from __future__ import annotations

import collections
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from slamctl.errors import SlamError
from slamctl.images import IMAGE_SUFFIXES, cell_or_reason, read_cell_file


def list_cells(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(cell file names, sorted; (name, reason) of every other entry): a bag's cells are its
    regular files with a cell image suffix, as in training; anything else (another suffix,
    a folder, a FIFO, a broken link or a link loop) is reported as skipped, never silently
    dropped, and one bad entry never fails the bag. Hidden names are ignored. Names, not
    Paths: 10,000 Path objects cost 3.5 MB, their names 0.6 MB."""
    cells, skipped = [], []
    with os.scandir(folder) as entries:
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                regular = e.is_file()  # follows links; a loop or a dangling link is not a file
            except OSError as err:
                skipped.append((e.name, f"cannot read the entry ({err.strerror})"))
                continue
            if not regular:
                kind = "a folder" if e.is_dir() else "not a regular file (a broken link, a loop, a FIFO, ...)"
                skipped.append((e.name, f"{kind}, not a cell image"))
            elif os.path.splitext(e.name)[1].lower() not in IMAGE_SUFFIXES:
                skipped.append((e.name, f"not a cell image suffix ({', '.join(sorted(IMAGE_SUFFIXES))})"))
            else:
                cells.append(e.name)
    return sorted(cells), sorted(skipped)


def find_bags(path: Path) -> list[Path]:
    """PATH is a bag (it holds images) or a folder of bags (its subfolders hold images)."""
    path = Path(path)
    if not path.exists():
        raise SlamError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise SlamError(f"{path}: expected a bag folder or a folder of bag folders")
    images = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    bags = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if images:
        holding = [b.name for b in bags if any(f.suffix.lower() in IMAGE_SUFFIXES for f in b.iterdir())]
        if holding:  # a stray image must not turn a folder of bags into one bag of strays
            raise SlamError(
                f"{path}: holds both cell images ({images[0]}{', ...' if len(images) > 1 else ''}) and bag "
                f"folders ({holding[0]}{', ...' if len(holding) > 1 else ''}): pass the bag folders, or move "
                f"the {len(images)} image(s) out of {path}"
            )
        return [path]
    if not bags:
        raise SlamError(
            f"{path}: holds neither cell images ({', '.join(sorted(IMAGE_SUFFIXES))}) nor bag folders"
        )
    return bags


def decoded(
    folder: Path,
    files: list[str],
    image_size: int,
    size: int,
    pool: ThreadPoolExecutor,
    lookahead: int,
    raw: bool = False,
) -> Iterator:
    """(file name, image or None, reason, sha256 of the file's bytes or "") in file order,
    decoding at most `lookahead` files ahead. With `raw` (the encoded wire path) the file's
    bytes come instead of its image, undecoded: the server decodes them."""
    queue: collections.deque = collections.deque()
    it = iter(files)

    def decode(name: str):
        path = folder / name
        try:  # read once: digested, then decoded (or sent) from memory
            data = read_cell_file(path)
        except SlamError as e:
            return None, str(e).split(": ", 1)[-1], ""
        digest = hashlib.sha256(data).hexdigest()  # the input, as it was read
        if raw:
            return data, "", digest
        return (*cell_or_reason(path, image_size, size, data), digest)

    for path in it:
        queue.append((path, pool.submit(decode, path)))
        if len(queue) >= lookahead:
            break
    while queue:
        path, future = queue.popleft()
        image, reason, digest = future.result()
        nxt = next(it, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(decode, nxt)))
        yield path, image, reason, digest


def input_digest(files: list[tuple[str, str]]) -> str:
    """A bag's input as one sha256: every cell file's name and the sha256 of its bytes, in
    order (a later run that computes the same digest saw the same cells)."""
    h = hashlib.sha256()
    for name, digest in files:
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def bag_digest(bag: Path) -> str:
    """input_digest of a bag's cell files as they are now, read but not decoded (what
    `--resume` compares with the digest an earlier result recorded); "" if unlistable."""
    try:
        files, _ = list_cells(bag)
    except OSError:
        return ""
    digests = []
    for name in files:
        try:
            digests.append((name, hashlib.sha256(read_cell_file(bag / name)).hexdigest()))
        except SlamError:
            digests.append((name, ""))
    return input_digest(digests)
