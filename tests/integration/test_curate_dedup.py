"""Near-dedup with the connected components distributed on Ray Data: the same components as scipy
on random graphs, and the same curated output as the scipy path on a corpus of planted chains
(transitive near duplicates) and stars."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.config import SourceConfig, load_config
from pipeline.curate.run import run_curate
from pipeline.stages import layout_for
from tests.integration.test_curate_sources import WORDS, prose
from tests.pipeline.curate.test_components import random_graph

pytestmark = pytest.mark.integration


def test_distributed_components_equal_scipys(ray_session):
    from pipeline.curate.components import distributed_components, local_components

    rng = np.random.default_rng(5)
    a, b = random_graph(rng, 120)
    chain = np.arange(10_000, 10_200, dtype=np.int64)[::-1]  # a 200-long chain, largest id first
    a, b = np.concatenate([a, chain[:-1]]), np.concatenate([b, chain[1:]])
    edges = ray_session.data.from_arrow(pa.table({"a": a, "b": b})).repartition(2)
    labels, run = distributed_components(edges, partitions=2)
    got = {row["node"]: row["root"] for row in labels.iter_rows()}
    nodes, roots = local_components(a, b)
    assert {n: got.get(n, n) for n in nodes.tolist()} == dict(zip(nodes.tolist(), roots.tolist()))
    assert len(got) == len(nodes) - len(set(roots.tolist()))  # one row per non-root node
    assert run.changes[-1] == 0 and 2 <= run.rounds <= 12


def mutate(rng: random.Random, text: str, words: int) -> str:
    out = text.split(" ")
    for _ in range(words):
        i = rng.randrange(len(out))
        out[i] = rng.choice(WORDS) + ("." if out[i].endswith(".") else "")
    return " ".join(out)


def planted_corpus(path: Path) -> dict[str, list[str]]:
    """Chains (each text two words away from the previous, the ends below the threshold), stars (variants
    of one text), exact copies inside both, and unrelated texts; returns each cluster's ids."""
    rng = random.Random(17)
    docs, clusters = [], {}
    for c in range(4):
        text = prose(rng, sentences=14)
        ids = []
        for k in range(7):
            ids.append(f"chain{c}-{rng.randrange(10**6):06d}")
            docs.append({"id": ids[-1], "text": text})
            text = mutate(rng, text, 2)
        docs.append({"id": f"chain{c}-copy", "text": docs[-3]["text"]})  # an exact copy of ids[4]
        clusters[f"chain{c}"] = ids
    for s in range(3):
        centre = prose(rng, sentences=14)
        ids = [f"star{s}-{k}" for k in range(8)]
        docs += [{"id": ids[0], "text": centre}] + [{"id": i, "text": mutate(rng, centre, 2)} for i in ids[1:]]
        clusters[f"star{s}"] = ids
    docs += [{"id": f"single-{k}", "text": prose(rng, sentences=14)} for k in range(20)]
    rng.shuffle(docs)
    for part in range(4):
        (path / f"part-{part}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[part::4]))
    return clusters


def test_distributed_path_curates_like_the_scipy_path(ray_session, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    clusters = planted_corpus(corpus)
    outputs = {}
    for max_pairs in (1_000_000, 0):  # scipy on the driver, then Ray Data rounds
        cfg = load_config(None, root=str(tmp_path))
        cfg.curate.dedup.fuzzy.driver_components_max_pairs = max_pairs
        cfg.curate.decontaminate.enabled = False
        out = tmp_path / f"out-{max_pairs}"
        report = run_curate(cfg, layout_for(tmp_path), out, inputs=[SourceConfig(name="web", path=str(corpus),
                                                                                  format="jsonl", kind="web")])
        kept = pq.read_table(sorted(out.glob("part-*.parquet")), columns=["id"])["id"].to_pylist()
        rejects = pq.read_table(sorted((out / "rejects").glob("*.parquet")), columns=["id", "reason", "meta"])
        rows = [(i, "", None) for i in kept] + [(r["id"], r["reason"], json.loads(r["meta"]).get("duplicate_of"))
                                                for r in rejects.to_pylist()]
        outputs[max_pairs] = sorted(rows), report["dedup"]
    (scipy_rows, scipy_stats), (ray_rows, ray_stats) = outputs[1_000_000], outputs[0]
    assert scipy_stats["fuzzy"]["components"]["method"] == "scipy" and ray_stats["fuzzy"]["components"]["method"] == "ray"
    assert ray_rows == scipy_rows
    for key in ("duplicates", "clusters", "candidate_pairs", "verified_pairs"):
        assert ray_stats["fuzzy"][key] == scipy_stats["fuzzy"][key]
    verdict = {i: (reason, dup_of) for i, reason, dup_of in ray_rows}
    for name, ids in clusters.items():  # each whole cluster, chain ends included, leaves its smallest id
        survivor = min(ids)
        assert verdict[survivor] == ("", None), name
        for i in ids:
            if i != survivor:
                assert verdict[i] == ("near_duplicate", survivor), (name, i, verdict[i])
        if name.startswith("chain"):  # the exact copy names its exact survivor
            assert verdict[f"{name}-copy"] == ("exact_duplicate", ids[4])
    assert sum(1 for i, (reason, _) in verdict.items() if i.startswith("single") and reason == "") == 20
