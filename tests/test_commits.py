"""Writes that race other writers: conflicts recognised, short writes redone (no Ray needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tables.commits import CommitRetryError, is_commit_conflict, retry_on_conflict
from tests.threads import at_once

CONFLICT = RuntimeError("lance error: Retryable commit conflict for version 5: This Merge transaction was "
                        "preempted by concurrent transaction Merge at version 5. Please retry.")


class _Table:
    """Counts the times it is moved to the latest version."""

    name = "videos"

    def __init__(self) -> None:
        self.checkouts = 0

    def checkout_latest(self) -> None:
        self.checkouts += 1


def _failing(errors: list[BaseException], result: str = "done"):
    def write() -> str:
        if errors:
            raise errors.pop(0)
        return result
    return write


def test_commit_conflicts_are_recognised() -> None:
    from lance.commit import CommitConflictError

    assert is_commit_conflict(CommitConflictError("Incompatible transaction: DataReplacement target fragment 0"))
    wrapped = RuntimeError("the backfill job failed")
    wrapped.__cause__ = CommitConflictError("concurrent Update")
    assert is_commit_conflict(wrapped)
    # two backfills adding their columns at once: Lance's own retryable conflict, as a RuntimeError
    assert is_commit_conflict(CONFLICT)
    assert not is_commit_conflict(ValueError("invalid --where 'x ='"))


def test_a_write_is_redone_on_the_latest_version_after_each_conflict() -> None:
    table, pauses = _Table(), []
    assert retry_on_conflict(_failing([CONFLICT] * 6), table, "adding a column", sleep=pauses.append) == "done"
    assert table.checkouts == 6 and len(pauses) == 6
    # growing, randomised pauses: each within (bound / 2, bound), the bound doubling from 20 ms to 2 s
    bounds = [min(0.02 * 2**i, 2.0) for i in range(6)]
    assert all(b / 2 <= p <= b for p, b in zip(pauses, bounds, strict=True)), pauses


def test_other_errors_are_raised_at_once() -> None:
    table = _Table()
    with pytest.raises(ValueError, match="bad type"):
        retry_on_conflict(_failing([ValueError("bad type")]), table, "adding a column", sleep=lambda s: None)
    assert table.checkouts == 0


def test_conflicts_past_the_deadline_give_a_clear_error() -> None:
    table = _Table()
    with pytest.raises(CommitRetryError, match=r"registering column 'x' on table 'videos': concurrent writers "
                                               r"committed first 1 times") as info:
        retry_on_conflict(_failing([CONFLICT] * 3), table, "registering column 'x'", deadline_s=0.0,
                          sleep=lambda s: None)
    assert info.value.__cause__ is CONFLICT


def test_stages_registering_their_columns_at_once_all_succeed(tmp_path: Path) -> None:
    # Four stages of one table registering their columns at the same moment (as four `vw backfill`
    # commands started together do): each column is two schema commits, and Lance refuses a schema
    # change against any concurrent one. Every registration must end, once, with its UDF attached.
    from jobs.backfill import BackfillOptions, ensure_columns, open_stage_table
    from tables.column_state import UDF_VERSION_KEY, field_spec
    from tables.connection import connect, open_videos
    from tables.ingest import ingest
    from tests.videogen import make_cfr_video
    from udfs.stages import get_stage

    videos = [make_cfr_video(tmp_path / f"v{i}.mp4", num_frames=10, fps=10, width=64, height=48).path
              for i in range(2)]
    pristine = tmp_path / "pristine"
    assert ingest(open_videos(connect(str(pristine))), [str(p) for p in videos]).inserted == 2
    opts = BackfillOptions(profile="tiny", num_frames=4, batch_size=4)
    latents = BackfillOptions(profile="tiny", num_frames=9, batch_size=4)  # clips of 4k+1 frames
    stages = [(get_stage(n), latents if n == "video_latents" else opts)
              for n in ("frame_features", "video_embedding", "scenarios", "video_latents")]
    for trial in range(3):
        db = tmp_path / f"db{trial}"
        shutil.copytree(pristine, db)
        work = []
        for stage, o in stages:
            spec = stage.spec(o)
            table = open_stage_table(connect(str(db)), stage)
            work.append((table, stage.udfs(o, spec), o, spec))
        assert at_once([lambda w=w: ensure_columns(*w) for w in work]) == [], f"trial {trial}"
        table = open_videos(connect(str(db)))
        for _, pairs, _, _ in work:
            for col, fn in pairs:
                assert field_spec(table, col).get(UDF_VERSION_KEY) == str(fn.version), (trial, col)
                assert table.to_lance().schema.field(col) is not None
        assert sorted(table.to_arrow().column("video_id").to_pylist()) == ["v0", "v1"]
