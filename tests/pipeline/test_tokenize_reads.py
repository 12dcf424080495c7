"""What each tokenize task reads: batches fixed by the files alone, rows read across row groups."""
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.tokenize.reads import GUIDED_FACTOR, RowReader, plan_tasks, read_footers, task_shard


def write(path, n, row_group_size, text_len=None):
    texts = [f"text {i}".ljust(text_len or 0, "x") for i in range(n)]
    table = pa.table({"id": [f"{path.stem}-{i}" for i in range(n)], "text": texts,
                      "source": ["s"] * n, "kind": ["web"] * n})
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def batches_of(tasks):
    return [(t["path"], b) for t in tasks for b in range(t["first"], t["stop"])]


def test_footers_give_rows_and_row_group_starts(tmp_path):
    fs = pafs.LocalFileSystem()
    shards = read_footers(fs, [write(tmp_path / "a.parquet", 10, 4), write(tmp_path / "b.parquet", 0, 4)])
    assert [(s.rows, s.group_starts) for s in shards] == [(10, (0, 4, 8)), (0, (0,))]  # pyarrow writes one empty group
    assert list(shards[0].groups_for(3, 9)) == [0, 1, 2]
    assert list(shards[0].groups_for(4, 8)) == [1]


def batch_bounds(tasks):
    return [(t["path"], b * t["batch_rows"], min(t["rows"], (b + 1) * t["batch_rows"]))
            for t in tasks for b in range(t["first"], t["stop"])]


def test_every_batch_is_in_exactly_one_task_whatever_the_concurrency(tmp_path):
    fs = pafs.LocalFileSystem()
    shards = read_footers(fs, [write(tmp_path / f"{k}.parquet", n, 50) for k, n in enumerate([1000, 3, 0, 257])])
    expected = [(s.path, b) for s in shards for b in range(-(-s.rows // 10))]
    for concurrency in (1, 2, 7, 64):
        tasks = plan_tasks(shards, batch_size=10, concurrency=concurrency)
        assert batches_of(tasks) == expected  # the same batches, in file order
        # guided self-scheduling: each task takes its share of what is left, so the last ones are single batches
        left = len(expected)
        for t in tasks:
            assert t["stop"] - t["first"] <= max(1, -(-left // (GUIDED_FACTOR * concurrency)))
            left -= t["stop"] - t["first"]
        assert tasks[-1]["stop"] - tasks[-1]["first"] == 1
    assert max(t["stop"] - t["first"] for t in plan_tasks(shards, 10, 64)) == 1
    assert plan_tasks(shards, 10, 1)[0]["stop"] == 64  # one slot: long runs (capped) for few scheduling gaps


def test_long_documents_make_smaller_batches_fixed_by_the_files_alone(tmp_path):
    fs = pafs.LocalFileSystem()
    short, long = write(tmp_path / "short.parquet", 400, 100), write(tmp_path / "long.parquet", 400, 100, 10_000)
    shards = read_footers(fs, [short, long])
    plans = [batch_bounds(plan_tasks(shards, 100, c, batch_bytes=200_000)) for c in (1, 2, 5)]
    assert plans[0] == plans[1] == plans[2]
    sizes = {path: {stop - start for _, start, stop in plans[0] if _ == path} for path in (short, long)}
    assert sizes[short] == {100}  # 400 short texts are far below 200 kB: batch_size decides
    assert max(sizes[long]) in range(15, 21)  # about 200 kB of 10 kB texts
    assert sum(stop - start for p, start, stop in plans[0] if p == long) == 400


def test_rows_across_row_groups_equal_a_slice_of_the_file(tmp_path):
    fs = pafs.LocalFileSystem()
    path = write(tmp_path / "a.parquet", 23, 5)
    whole = pq.read_table(path, columns=["id", "text", "source"])
    (task,) = plan_tasks(read_footers(fs, [path]), batch_size=23, concurrency=1)
    reader = RowReader(fs, task_shard(task))  # a task as Ray Data hands it over
    for start, stop in [(0, 23), (3, 12), (5, 10), (20, 23), (22, 22)]:
        assert reader.rows(start, stop).equals(whole.slice(start, stop - start))


def test_a_rewritten_file_is_read_again_not_served_from_the_cache(tmp_path):
    fs = pafs.LocalFileSystem()
    path = write(tmp_path / "a.parquet", 6, 6)
    (shard,) = read_footers(fs, [path])
    assert RowReader(fs, shard).rows(0, 6).column("text").to_pylist()[0] == "text 0"
    pq.write_table(pa.table({"id": ["x"] * 6, "text": ["new"] * 6, "source": ["s"] * 6}), path)
    assert RowReader(fs, shard).rows(0, 6).column("text").to_pylist()[0] == "new"
