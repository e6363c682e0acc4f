"""A PyTorch dataset of video latents for LoRA training, straight from the ``video_latents`` column.

::

    from tables.latent_dataset import VideoLatentDataset

    ds = VideoLatentDataset(split="train", scenario="press_room")
    loader = ds.loader(batch_size=4, seed=0)        # shuffled, sharded by rank
    for epoch in range(10):
        loader.set_epoch(epoch)
        for batch in loader:
            batch["latents"]   # float16 [B, C, T, H, W], scaled: what the transformer trains on
            batch["prompt"]    # list of B strings

The column is computed by the ``video_latents`` stage (:mod:`udfs.video_latents`): a Lance blob
holding each video's ``.npz``. The table version is pinned when the dataset is built; each batch
reads its rows' blobs with one ``take_blobs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from tables.filters import combine, literal
from tables.names import VIDEOS
from tables.sharding import ShardedSampler, epoch_loader
from tables.snapshot import pin_table
from udfs.errors import VwError
from udfs.video_latents import NAME, clip_latents, npz_arrays


class LatentDatasetError(VwError, ValueError):
    """The latents dataset cannot be built as asked (no column, bad filter)."""


class VideoLatentDataset:
    """Map-style ``torch.utils.data.Dataset`` of ``(latents, prompt)`` samples for LoRA training.

    A sample is one clip of one video, plain or flipped (``flipped="both"``: both are samples;
    ``"none"``: plain only), with one prompt: every prompt variant of the row is a sample
    (``prompts="variants"``, the row's ``prompt_variants`` after ``vw backfill scenarios``), or
    the caption alone (``"caption"``). Rows without latents are left out and listed in
    :attr:`missing`; the table version is pinned when the dataset is built.
    """

    def __init__(self, db: str | None = None, *, where: str | None = None, split: str | None = None,
                 scenario: str | None = None, prompts: Literal["variants", "caption"] = "variants",
                 flipped: Literal["both", "none"] = "both", column: str = NAME, version: int | None = None) -> None:
        if prompts not in ("variants", "caption"):
            raise LatentDatasetError(f"prompts must be 'variants' or 'caption', got {prompts!r}")
        if flipped not in ("both", "none"):
            raise LatentDatasetError(f"flipped must be 'both' or 'none', got {flipped!r}")
        text = ["caption"] + (["prompt_variants"] if prompts == "variants" else [])
        self.column = column
        self.snapshot, lance_ds = pin_table(db, VIDEOS, version, [column, *text], LatentDatasetError)
        self.where = combine(where, split and f"split = {literal(split)}",
                             scenario and f"scenario = {literal(scenario)}")
        cond = f"{column} IS NOT NULL"
        try:
            got = lance_ds.to_table(columns=["video_id", "_rowoffset", *text],
                                    filter=f"({self.where}) AND {cond}" if self.where else cond)
            self.missing = lance_ds.to_table(
                columns=["video_id"], filter=f"({self.where}) AND NOT ({cond})" if self.where
                else f"NOT ({cond})").column(0).to_pylist()
        except Exception as err:  # noqa: BLE001 - surfaced as a clear message
            raise LatentDatasetError(f"invalid filter {self.where!r}: {err}") from err
        meta = {k.decode(): v.decode() for k, v in (lance_ds.schema.field(column).metadata or {}).items()}
        self.meta = meta
        clips = int(meta.get("vw.clips", "1"))
        sides = [False, True] if flipped == "both" and meta.get("vw.augment") == "true" else [False]
        rows: list[tuple[int, str, str]] = []
        captions = got.column("caption").to_pylist()
        variants = got.column("prompt_variants").to_pylist() if prompts == "variants" else [None] * got.num_rows
        for pos, vid, caption, options in zip(got.column("_rowoffset").to_pylist(), got.column("video_id").to_pylist(),
                                              captions, variants, strict=True):
            texts = [t for t in (options or [caption]) if t]
            rows += [(int(pos), vid, t) for t in texts]
        self.samples = [(pos, vid, prompt, clip, side) for pos, vid, prompt in rows for clip in range(clips)
                        for side in sides]

    @property
    def dataset(self) -> Any:
        """The Lance dataset at the pinned version, opened once per process."""
        return self.snapshot.dataset

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Samples for ``indices`` with one read of the table (each row read once)."""
        import torch

        picked = [self.samples[int(i)] for i in indices]
        positions = sorted({p for p, *_ in picked})
        blobs = self.dataset.take_blobs(self.column, indices=positions)  # the .npz of each row
        cells = {p: npz_arrays(b) for p, b in zip(positions, blobs, strict=True)}  # views, no copy
        out = []
        for pos, vid, prompt, clip, side in picked:
            array = clip_latents(cells[pos], clip, side)
            if array is None:
                raise LatentDatasetError(f"{vid}: its latents have no {'flipped ' if side else ''}clip {clip}")
            out.append({"video_id": vid, "latents": torch.from_numpy(array.copy()), "prompt": prompt,
                        "flipped": side, "clip": clip})
        return out

    def loader(self, batch_size: int = 4, *, num_workers: int = 0, seed: int = 0, shuffle: bool = True,
               rank: int | None = None, world_size: int | None = None, even: bool = False, **kwargs: Any) -> Any:
        """A ``DataLoader`` over the samples, shuffled by ``seed`` per epoch and sharded by rank."""
        return epoch_loader(self, batch_size, ShardedSampler(len(self), seed, shuffle, rank, world_size, even),
                            num_workers, **kwargs)
