"""The collector's disk spool."""

from __future__ import annotations

from collector.ingest.spool import Spool


def test_a_spooled_batch_reads_back_as_written_and_a_half_written_one_is_dropped(tmp_path) -> None:
    spool = Spool(tmp_path / "spool", 1 << 20)
    lines = ["load,clinic=a v=1 1", "load,clinic=b v=2 2"]
    path = spool.put(lines)
    assert spool.files() == [path] and spool.read(path) == lines
    assert spool.bytes() == len("\n".join(lines))
    assert spool.has_room(["x" * 1000]) and not spool.has_room(["x" * (1 << 20)])
    # A batch half-written when the process died was never acknowledged (the broker still has
    # its messages): the next start drops it and keeps the finished one.
    (tmp_path / "spool" / f"{1:020d}-1-000000.tmp").write_text("load,clinic=a v=")
    again = Spool(tmp_path / "spool", 1 << 20)
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [path.name]
    assert again.files() == [path]
