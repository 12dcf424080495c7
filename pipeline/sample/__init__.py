"""The bundled sample corpus: `corpus.py` writes it (standard library only, in a fresh
interpreter), `stage.py` is the `sample` stage that builds it under the storage root."""
