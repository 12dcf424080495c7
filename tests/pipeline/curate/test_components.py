"""Connected components by large-star / small-star rounds (Kiveris et al. 2014), each step run
here on in-memory partitions exactly as the Ray tasks run it, against scipy's csgraph."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def random_graph(rng: np.random.Generator, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges over sparse random node ids: long chains in shuffled order, large stars whose centre is
    not the smallest node, a few random edges joining them, duplicates and both orientations."""
    ids = rng.choice(1 << 40, size=nodes, replace=False).astype(np.int64)
    a, b = [], []
    pos = 0
    while pos < nodes - 1:
        size = min(int(rng.integers(2, nodes // 4 + 3)), nodes - pos)
        members = ids[pos: pos + size]
        if rng.random() < 0.5:  # a chain, visited in random id order
            a += members[:-1].tolist()
            b += members[1:].tolist()
        else:  # a star around a random member
            centre = members[rng.integers(size)]
            a += [centre] * (size - 1)
            b += [m for m in members if m != centre]
        pos += size
    for _ in range(nodes // 20):
        a.append(ids[rng.integers(nodes)])
        b.append(ids[rng.integers(nodes)])
    a, b = np.array(a, np.int64), np.array(b, np.int64)
    flip = rng.random(len(a)) < 0.5
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    dup = rng.integers(0, len(a), size=len(a) // 10)
    return np.concatenate([a, a[dup]]), np.concatenate([b, b[dup]])


def in_memory_step(edges: pa.Table, reduce, both_ways: bool, partitions: int) -> pa.Table:
    from pipeline.curate.components import NeighbourRows
    from pipeline.curate.partitions import PART

    rows = NeighbourRows(partitions, both_ways)(edges)
    return pa.concat_tables([reduce(rows.filter(pc.equal(rows[PART], p))) for p in range(partitions)])


def in_memory_components(a: np.ndarray, b: np.ndarray, partitions: int = 3) -> tuple[dict[int, int], int]:
    from pipeline.curate.components import CHANGED, A, B, large_star, small_star

    edges = pa.table({A: pa.array(a, pa.int64()), B: pa.array(b, pa.int64())})
    rounds = 0
    while True:
        rounds += 1
        large = in_memory_step(edges, large_star, True, partitions)
        edges = in_memory_step(large, small_star, False, partitions)
        if pc.sum(large[CHANGED]).as_py() + pc.sum(edges[CHANGED]).as_py() == 0:
            break
    nodes = edges[A].to_pylist()
    assert len(nodes) == len(set(nodes))  # converged: one edge per non-root node
    return dict(zip(nodes, edges[B].to_pylist())), rounds


def test_star_rounds_give_scipys_components_on_random_graphs():
    from pipeline.curate.components import local_components

    rng = np.random.default_rng(17)
    for nodes in (2, 3, 10, 60, 400):
        for _ in range(3):
            a, b = random_graph(rng, nodes)
            ref_nodes, ref_roots = local_components(a, b)
            labels, rounds = in_memory_components(a, b)
            assert {n: labels.get(n, n) for n in ref_nodes.tolist()} == dict(zip(ref_nodes.tolist(), ref_roots.tolist()))
            assert set(labels.values()).isdisjoint(labels)  # roots are nobody's leaf
            assert rounds <= 12


def test_a_long_chain_in_falling_order_and_a_star_with_its_largest_node_as_centre():
    from pipeline.curate.components import local_components

    chain = np.arange(1000, 0, -1, dtype=np.int64)
    star_leaves = np.arange(5000, 5999, dtype=np.int64)
    a = np.concatenate([chain[:-1], np.full(len(star_leaves), 6000)])
    b = np.concatenate([chain[1:], star_leaves])
    labels, rounds = in_memory_components(a, b, partitions=4)
    assert rounds <= 12  # log-many rounds for a 1000-long chain
    assert all(labels[n] == 1 for n in range(2, 1001))
    assert all(labels[n] == 5000 for n in list(range(5001, 5999)) + [6000])
    nodes, roots = local_components(a, b)
    assert {n: labels.get(n, n) for n in nodes.tolist()} == dict(zip(nodes.tolist(), roots.tolist()))


def test_one_step_on_one_partition():
    from pipeline.curate.components import _NBR, _NODE, large_star, small_star

    # node 5 with neighbours 2, 7, 9 (7 twice): large-star links 7 and 9 to 2
    rows = pa.table({_NODE: pa.array([5, 5, 5, 5], pa.int64()), _NBR: pa.array([7, 2, 9, 7], pa.int64())})
    out = large_star(rows).to_pylist()
    assert sorted((r["a"], r["b"], r["_changed"]) for r in out) == [(7, 2, True), (9, 2, True)]
    # node 9 with smaller neighbours 4, 6, 3: small-star links 9, 4 and 6 to 3
    rows = pa.table({_NODE: pa.array([9, 9, 9], pa.int64()), _NBR: pa.array([4, 6, 3], pa.int64())})
    out = small_star(rows).to_pylist()
    assert sorted((r["a"], r["b"], r["_changed"]) for r in out) == [(4, 3, True), (6, 3, True), (9, 3, False)]
