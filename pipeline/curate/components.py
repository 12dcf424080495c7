"""Connected components of a graph held as a Ray Dataset of edges, with no process holding every edge.

The large-star / small-star rounds of Kiveris et al. 2014, "Connected Components in MapReduce
and Beyond" (section 2; bigcode's Spark near-dedup and Data-Juicer's Ray MinHash dedup use the
same rounds). A node's label is its own id (an int64 uid); each step is one Ray Data shuffle that
brings every node's neighbours to one task, keyed by a partition number of the node:

    large-star  node x links each strictly larger neighbour to m(x), the smallest of x and all
                its neighbours;
    small-star  node x links itself and each smaller neighbour to m(x), the smallest of x and
                its smaller neighbours.

Neither step disconnects a component or joins two. A step changed nothing exactly when every
edge it emitted was an input edge (large-star: m(x) = x wherever x has a larger neighbour;
small-star: every node has at most one smaller neighbour). When a round of both changes
nothing, each node with a larger neighbour has no smaller one and each node has at most one
smaller neighbour: every component is a star around its smallest node, and the edges are
(node, root). The driver only sums the changed-edge counts of each step.

On small graphs `local_components` (scipy's csgraph over edges gathered on the driver) is
faster: no shuffle rounds. `find_components` picks by the number of edges.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.curate.partitions import PART, grouped, partition_of

A, B = "a", "b"
"""Edge columns: the two ends (int64 node ids)."""
NODE, ROOT = "node", "root"
"""Label columns: a node and the smallest node of its component."""
CHANGED = "_changed"
_NODE, _NBR = "_node", "_nbr"


# ---------------------------------------------------------------- one step, on one partition's rows


@dataclass(frozen=True)
class NeighbourRows:
    """Edges (a, b) -> rows (node, neighbour) keyed by the node's partition: both directions for
    large-star, only at the larger end for small-star. Self loops are dropped (they join nothing)."""

    partitions: int
    both_ways: bool

    def __call__(self, edges: pa.Table) -> pa.Table:
        a = edges[A].to_numpy(zero_copy_only=False)
        b = edges[B].to_numpy(zero_copy_only=False)
        keep = a != b
        a, b = a[keep], b[keep]
        if self.both_ways:
            node, nbr = np.concatenate([a, b]), np.concatenate([b, a])
        else:
            node, nbr = np.maximum(a, b), np.minimum(a, b)
        return pa.table({_NODE: pa.array(node, pa.int64()), _NBR: pa.array(nbr, pa.int64()),
                         PART: pa.array(partition_of(node, self.partitions))})


def _adjacency(group: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(node, neighbour) rows sorted and distinct, the first row of each node, and its row count."""
    node = group[_NODE].to_numpy(zero_copy_only=False)
    nbr = group[_NBR].to_numpy(zero_copy_only=False)
    order = np.lexsort((nbr, node))
    node, nbr = node[order], nbr[order]
    if len(node):
        distinct = np.concatenate([[True], (node[1:] != node[:-1]) | (nbr[1:] != nbr[:-1])])
        node, nbr = node[distinct], nbr[distinct]
    starts = np.flatnonzero(np.concatenate([[True], node[1:] != node[:-1]])) if len(node) else np.zeros(0, np.int64)
    counts = np.diff(np.concatenate([starts, [len(node)]]))
    return node, nbr, starts, counts


def _edges(a: np.ndarray, b: np.ndarray, changed: np.ndarray) -> pa.Table:
    return pa.table({A: pa.array(a, pa.int64()), B: pa.array(b, pa.int64()), CHANGED: pa.array(changed, pa.bool_())})


def large_star(group: pa.Table) -> pa.Table:
    """Each node's strictly larger neighbours, linked to the smallest of the node and its neighbours."""
    node, nbr, starts, counts = _adjacency(group)
    if not len(node):
        return _edges(node, nbr, np.zeros(0, bool))
    smallest = np.minimum(np.minimum.reduceat(nbr, starts), node[starts])
    m = np.repeat(smallest, counts)
    emit = nbr > node
    return _edges(nbr[emit], m[emit], m[emit] != node[emit])


def small_star(group: pa.Table) -> pa.Table:
    """Each node and its smaller neighbours (all of its rows here), linked to the smallest of them."""
    node, nbr, starts, counts = _adjacency(group)
    if not len(node):
        return _edges(node, nbr, np.zeros(0, bool))
    smallest = np.minimum.reduceat(nbr, starts)  # < node: every row's neighbour is smaller
    m = np.repeat(smallest, counts)
    others = nbr != m  # each such row's edge (node, nbr) becomes (nbr, m): a change
    a = np.concatenate([node[starts], nbr[others]])
    b = np.concatenate([smallest, m[others]])
    return _edges(a, b, np.concatenate([np.zeros(len(starts), bool), np.ones(int(others.sum()), bool)]))


# ---------------------------------------------------------------- the rounds


@dataclass
class ComponentsRun:
    """How the components were found: `scipy` on the driver or `ray` in rounds, over how many edges."""

    method: str
    edges: int
    rounds: int = 0
    changes: list[int] | None = None
    """Edges changed per round (large-star plus small-star), the last one 0."""
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"method": self.method, "edges": self.edges, "rounds": self.rounds, "seconds": round(self.seconds, 3),
                **({"changes": self.changes} if self.changes is not None else {})}


def _step(edges, reduce, both_ways: bool, partitions: int):
    rows = edges.map_batches(NeighbourRows(partitions, both_ways), batch_format="pyarrow")
    return grouped(rows, partitions).map_groups(reduce, batch_format="pyarrow").materialize()


def _changed(edges) -> int:
    """Edges a step changed, summed per block by the tasks (the driver gets one number per block)."""
    counts = edges.map_batches(lambda t: pa.table({"n": [int(pc.sum(t[CHANGED]).as_py() or 0)]}),
                               batch_format="pyarrow", batch_size=None)
    return sum(row["n"] for row in counts.iter_rows())


def distributed_components(edges, partitions: int):
    """Rows (node, root) for every node of the `edges` dataset (a, b) that is not its component's
    smallest node, found in large-star / small-star rounds on Ray Data. Returns (dataset, run)."""
    run = ComponentsRun("ray", edges.count(), changes=[])
    # Kiveris et al. prove O(log^2 n) rounds; far more means a bug, not a big graph.
    limit = 10 + 4 * math.ceil(math.log2(max(2 * run.edges, 2))) ** 2
    current = edges.select_columns([A, B])
    while True:
        run.rounds += 1
        large = _step(current, large_star, True, partitions)
        small = _step(large, small_star, False, partitions)
        run.changes.append(_changed(large.union(small)))  # one job counts both steps
        current = small
        if run.changes[-1] == 0:
            break
        if run.rounds >= limit:
            raise RuntimeError(f"connected components did not converge in {limit} rounds "
                               f"(changes per round: {run.changes})")
    labels = current.map_batches(lambda t: pa.table({NODE: t[A], ROOT: t[B]}), batch_format="pyarrow")
    return labels, run


def local_components(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots) of the graph with edges (a[i], b[i]): every node, sorted, with the smallest
    node of its component. scipy's csgraph, in compiled code, linear in the edges."""
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    if not len(a):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    nodes, index = np.unique(np.concatenate([a, b]), return_inverse=True)  # nodes sorted
    edges = len(a)
    graph = coo_array((np.ones(edges, np.int8), (index[:edges], index[edges:])), shape=(len(nodes), len(nodes)))
    _, label = connected_components(graph, directed=False)
    # Labels are 0..k-1; since nodes are sorted, a label's first node is its smallest.
    _, first = np.unique(label, return_index=True)
    return nodes, nodes[first][label]


def find_components(edges, partitions: int, max_local_edges: int):
    """Rows (node, root) for every non-root node of the `edges` dataset (a, b): on the driver with
    scipy when there are at most `max_local_edges` edges, else in distributed rounds."""
    import ray

    start = time.perf_counter()
    count = edges.count()
    if count > max_local_edges:
        labels, run = distributed_components(edges, partitions)
        run.seconds = time.perf_counter() - start
        return labels, run
    refs = edges.select_columns([A, B]).to_arrow_refs()
    tables = [t for t in ray.get(refs) if len(t)]
    if not tables:
        return ray.data.from_arrow(pa.table({NODE: pa.array([], pa.int64()), ROOT: pa.array([], pa.int64())})), \
            ComponentsRun("scipy", 0)
    table = pa.concat_tables(tables)
    nodes, roots = local_components(table[A].to_numpy(), table[B].to_numpy())
    del table, tables
    leaf = nodes != roots
    labels = pa.table({NODE: pa.array(nodes[leaf], pa.int64()), ROOT: pa.array(roots[leaf], pa.int64())})
    return ray.data.from_arrow(labels), ComponentsRun("scipy", count, seconds=time.perf_counter() - start)
