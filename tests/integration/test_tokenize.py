"""Tokenizer training and Ray Data tokenize+pack: the packed stream is exactly the curated documents."""
import json
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.tokenizer import Tokenizer
from pipeline.config import TokenizeConfig, TokenizerConfig
from pipeline.packed import Manifest, PackedSplit
from pipeline.tokenize.curated import TokenizeError
from pipeline.tokenize.pack import tokenize_and_pack
from pipeline.tokenize.tokenizer import train_tokenizer

pytestmark = pytest.mark.integration

WORDS = "the quick brown fox jumps over lazy dog def return class import yield lambda é ü 東京 😀".split()


def write_curated(path, n_docs=120, seed=0):
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120))) + ("\n\n  x = 1\n" if i % 3 else "")
             for i in range(n_docs)]
    table = pa.table({"id": [f"doc-{i:04d}" for i in range(n_docs)], "text": texts,
                      "source": ["a" if i % 2 else "b" for i in range(n_docs)], "kind": ["web"] * n_docs})
    path.mkdir(parents=True)
    pq.write_table(table.slice(0, 70), path / "part-00000.parquet")
    pq.write_table(table.slice(70), path / "part-00001.parquet")
    (path / "rejects").mkdir()
    pq.write_table(table.slice(0, 3), path / "rejects" / "part-00000.parquet")  # must not be read
    return dict(zip(table.column("id").to_pylist(), texts))


def read_streams(tokens_dir, split):
    """Per source: each batch's rows then its tail segment, in manifest order: its documents' tokens."""
    manifest = Manifest.read(tokens_dir)
    streams = {}
    for source, info in manifest.splits[split]["sources"].items():
        tail_file = next((f for f in info["files"] if f.endswith("shard-tail.npy")), None)
        tail = np.load(tokens_dir / tail_file).ravel() if tail_file else np.empty(0)
        stream, t = [], 0
        for file, rows, tail_len in info["batches"]:
            if file:
                stream.append(np.load(tokens_dir / file).ravel())
            stream.append(tail[t:t + tail_len])
            t += tail_len
        assert np.all(tail[t:] == manifest.pad_id)  # after the last tail only padding
        streams[source] = np.concatenate(stream).astype(np.int64)
    return streams


def test_packed_tokens_decode_back_to_the_documents(ray_session, tmp_path):
    docs = write_curated(tmp_path / "curated")
    text_ids = {text: doc_id for doc_id, text in docs.items()}
    id_source = {f"doc-{i:04d}": "a" if i % 2 else "b" for i in range(len(docs))}
    info = train_tokenizer(tmp_path / "curated", tmp_path / "tok", TokenizerConfig(vocab_size=400))
    tok = Tokenizer.from_file(tmp_path / "tok" / "tokenizer.json")
    assert info["vocab_size"] == tok.vocab_size <= 400
    cfg = TokenizeConfig(seq_len=16, val_fraction=0.2, batch_size=7, concurrency=2)
    manifest = tokenize_and_pack(tmp_path / "curated", tmp_path / "tok", tmp_path / "tokens", cfg)
    assert manifest.tokenizer_fingerprint == tok.fingerprint and manifest.seq_len == 16
    recovered = {}
    for split in ("train", "val"):
        texts = []
        for source, stream in read_streams(tmp_path / "tokens", split).items():
            assert stream[-1] == tok.eot_id
            pieces = np.split(stream, np.flatnonzero(stream == tok.eot_id) + 1)[:-1]
            decoded = [tok.decode(p[:-1].tolist()) for p in pieces]
            info = manifest.splits[split]["sources"][source]
            assert len(decoded) == info["documents"] and len(stream) == info["tokens"]
            # rows never mix sources: every document of this stream came from this source
            assert {id_source[d] for d in map(text_ids.get, decoded)} == {source}
            texts += decoded
        assert len(texts) == manifest.splits[split]["documents"]
        recovered[split] = texts
        split_rows = PackedSplit(tmp_path / "tokens", split)
        assert len(split_rows) == manifest.splits[split]["rows"]
        assert split_rows.rows(np.arange(len(split_rows))).shape == (len(split_rows), 17)
        by_source = split_rows.source_rows()
        assert sorted(np.concatenate(list(by_source.values())).tolist()) == list(range(len(split_rows)))
    # every document exactly once, in the split its id picks, byte for byte
    assert sorted(recovered["train"] + recovered["val"]) == sorted(docs.values())
    assert len(recovered["val"]) > 0


def test_tokenize_reruns_replace_output_and_missing_inputs_are_clear(ray_session, tmp_path):
    write_curated(tmp_path / "curated", n_docs=40)
    train_tokenizer(tmp_path / "curated", tmp_path / "tok", TokenizerConfig(vocab_size=300))
    cfg = TokenizeConfig(seq_len=16, val_fraction=0.2, batch_size=16)
    first = tokenize_and_pack(tmp_path / "curated", tmp_path / "tok", tmp_path / "tokens", cfg)
    second = tokenize_and_pack(tmp_path / "curated", tmp_path / "tok", tmp_path / "tokens", cfg)
    assert json.dumps(first.splits, sort_keys=True) == json.dumps(second.splits, sort_keys=True)
    with pytest.raises(TokenizeError, match="run `ownlm curate` first"):
        tokenize_and_pack(tmp_path / "nothing", tmp_path / "tok", tmp_path / "t2", cfg)
    with pytest.raises(TokenizeError, match="run `ownlm tokenizer` first"):
        tokenize_and_pack(tmp_path / "curated", tmp_path / "none", tmp_path / "t2", cfg)


def test_the_same_corpus_always_packs_into_the_same_shards(ray_session, tmp_path):
    """Which documents share a batch decides the shards, so neither the order in which tasks finish
    nor how many run at once may: files of very different sizes pack identically every time."""
    import hashlib

    rng = random.Random(1)
    curated = tmp_path / "curated"
    curated.mkdir()
    for f, n in enumerate([90, 3, 60, 1, 40, 7]):  # a big file is read more slowly than a small one
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 400))) for _ in range(n)]
        pq.write_table(pa.table({"id": [f"f{f}-{i}" for i in range(n)], "text": texts, "source": ["s"] * n,
                                 "kind": ["web"] * n}), curated / f"part-{f:05d}.parquet")
    train_tokenizer(curated, tmp_path / "tok", TokenizerConfig(vocab_size=300))
    def digest(folder):
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*.npy"))}

    runs = []
    for k, concurrency in enumerate((2, 2, 1)):
        cfg = TokenizeConfig(seq_len=16, val_fraction=0.1, batch_size=8, concurrency=concurrency)
        tokenize_and_pack(curated, tmp_path / "tok", tmp_path / f"tokens{k}", cfg)
        runs.append(digest(tmp_path / f"tokens{k}"))
    assert runs[0] == runs[1] == runs[2]
