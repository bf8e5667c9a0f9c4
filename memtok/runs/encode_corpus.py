"""`memtok encode-corpus`: encode every text of a dataset into a memory store, on one process or many.

Scale-out is torch.distributed as it is: run the same command under `torchrun --nproc-per-node N`
(or `accelerate launch`), on one machine or several. Rank r takes rows r, r + N, r + 2N, ...,
writes its own shards, and rank 0 builds the one index at the end. The ranks exchange only a barrier
and a few counts, so they talk over gloo on CPU tensors, whatever device they encode on.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ..codec import MemoryCodec
from ..encode.resolved import Resolved
from ..errors import MemtokError
from ..files import lock_folder
from ..settings.config import EncodeConfig
from ..store.keys import write_keys
from ..store.shards import STORE_FORMAT
from ..store.writer import ShardWriter, done_rows, prepare, write_index
from .folder import pin_settings, refusals, settings, with_pinned_recipe
from .sources import Source

DEATH_GRACE = 30.0  # seconds an orphaned worker is given to save its texts in flight
# How long a rank waits at a barrier for the others: the last barrier waits for the slowest rank's
# last text, hours on a big model, where torch's default is 30 minutes. A rank that dies does not
# leave the others waiting that long: its launcher stops them all.
GROUP_TIMEOUT = timedelta(days=2)
_watching = False


def distributed(backend: str = "gloo") -> tuple[int, int]:
    """(rank, world size); joins the process group a launcher set up through its environment. An
    encode's ranks exchange only a barrier and a few counts, on CPU tensors: gloo, whatever they encode
    on; a training averages gradients where they are (`"cpu:gloo,cuda:nccl"` on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        watch_launcher()
        dist.init_process_group(backend, timeout=GROUP_TIMEOUT)
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def watch_launcher() -> None:
    """A worker whose launcher was killed outright (SIGKILL) would run on alone, holding the store,
    and a restart would be refused until it ended; one waiting for the launcher's rendezvous would
    wait half an hour. A watcher thread sees the launcher go: it stops the worker as Ctrl-C does
    (SIGTERM: the texts in flight are saved), and kills it if it is still there `DEATH_GRACE`
    seconds later (a worker blocked inside a collective or the rendezvous never sees SIGTERM).
    Started as early as the command can (before the model loads); a worker whose parent is
    already init was orphaned before it could look."""
    global _watching
    if _watching or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    _watching, launcher = True, os.getppid()

    def watch() -> None:
        while os.getppid() == launcher != 1:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(DEATH_GRACE)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="memtok-launcher-watch", daemon=True).start()


def rank_device(device: str | None) -> str | None:
    """Each rank on its own GPU (LOCAL_RANK), as torchrun expects, made the rank's current device so
    that nothing of it lands on GPU 0; `--device cuda` means the rank's own GPU too. `auto` (one
    model spread over every GPU) is refused when there are several ranks: each would spread over all."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device == "auto":
        raise MemtokError("--device auto spreads one model over every GPU, but each of the processes torchrun "
                          "started takes a GPU of its own: leave --device out, or give cuda")
    if device in (None, "cuda") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        local, gpus = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local >= gpus:
            raise MemtokError(f"process {local} of this node has no GPU of its own ({gpus} here): start at most "
                              f"{gpus} per node, or pass --device cpu")
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def _sum(value: int) -> int:
    if not dist.is_initialized():
        return value
    t = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(t)
    return int(t.item())


def run_corpus(codec: MemoryCodec, source: Source, out: str | Path, config: EncodeConfig | None = None,
               shard_size: int = 256, show_progress_bar: bool = True, command: str = "") -> dict:
    """Encode the rows of `source` not yet in the store at `out`; returns counts for the whole store."""
    root = Path(out)
    rank, world = distributed()
    resolved = codec.resolve(with_pinned_recipe(config or EncodeConfig(), root / "store.json"))
    pinned = {"format": STORE_FORMAT, **settings(codec.lm, resolved, source, command)}
    with ExitStack() as held:
        _lock_on_rank_0(root, rank, held)
        if rank == 0:  # rank 0 pins the settings and readies the folder; the others then check against it
            pin_settings(root / "store.json", pinned)
            prepare(root, world)
        _barrier()
        if rank != 0:
            pin_settings(root / "store.json", pinned)
        return _encode_rows(codec, source, root, resolved, rank, world, shard_size, show_progress_bar)


def _store_sizes(rows: list[dict], texts: dict[int, str]) -> dict:
    """The store's payload beside zstd of each text alone and of all its texts together: a corpus
    compressor shares context across texts, which memories do not."""
    import zstandard

    held = [r for r in rows if r["payload_bytes"] is not None and r["row"] in texts]
    together = "\n".join(texts[r["row"]] for r in held).encode("utf-8")
    return {"payload_bytes": sum(r["payload_bytes"] for r in held),
            "zstd_bytes_each": sum(r["zstd_bytes"] or 0 for r in held),
            "zstd_bytes_together": len(zstandard.ZstdCompressor(level=19).compress(together)) if held else 0}


def _lock_on_rank_0(root: Path, rank: int, held: ExitStack) -> None:
    """One run per store: rank 0 takes the folder's lock (held until `held` closes), and every rank
    of a refused run stops."""
    refused = ""
    if rank == 0:
        try:
            held.enter_context(lock_folder(root))
        except MemtokError as exc:
            refused = str(exc)
    if _sum(int(bool(refused))):
        raise MemtokError(refused or f"{root} is in use by another memtok run")


def _encode_rows(codec: MemoryCodec, source: Source, root: Path, resolved: Resolved, rank: int, world: int,
                 shard_size: int, show_progress_bar: bool) -> dict:
    """This rank's rows not yet done, each recorded as it finishes; rank 0 then indexes the store."""
    writer = ShardWriter(root, rank, shard_size)
    done = done_rows(root)
    text = {source.first + i: t for i, t in enumerate(source.texts)}  # by source row, what ids are made of
    mine = [row for j, row in enumerate(text) if j % world == rank and row not in done]
    began = time.perf_counter()
    refused = refusals(codec.lm, [text[row] for row in mine])
    for j, error in refused.items():
        writer.add(mine[j], failure={"failed": error, "text_sha256": None})
    valid = [row for j, row in enumerate(mine) if j not in refused]
    texts = [text[r] for r in valid]
    if texts:
        codec.encode(texts, resolved, show_progress_bar=show_progress_bar and rank == 0,
                     on_result=lambda j, mem: writer.add(valid[j], memory=mem),
                     checkpoint=root / f"in-flight-r{rank}.safetensors")
    writer.flush()
    wall = time.perf_counter() - began
    encoded_now = _sum(len(mine))
    _barrier()
    summary = {"encoded_now": encoded_now, "resumed": len(done), "wall_seconds": round(wall, 1),
               "world_size": world, "texts_per_hour": round(3600 * encoded_now / wall, 1) if wall and encoded_now else None}
    if rank == 0:
        import pyarrow.parquet as pq

        write_index(root)
        keys = write_keys(root, codec)
        index = pq.read_table(root / "index.parquet", columns=["row", "status", "payload_bytes", "zstd_bytes"])
        status = index.column("status").to_pylist()
        summary.update(total=len(status), exact=status.count("exact"), not_exact=status.count("not_exact"),
                       failed=status.count("failed"), semantic_keys=keys, **_store_sizes(index.to_pylist(), text))
    _barrier()
    return summary
