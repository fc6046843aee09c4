"""Index: where do documents live, and how are they written and read back?

`Index` ties the manifest (schema, format), the tantivy keyword index and the vector caches of one
directory together. Write with `index.writer()`, read with `index.searcher()`.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from souk.errors import IndexStateError
from souk.index.manifest import MANIFEST, new_manifest, read_manifest, write_json_atomic
from souk.index.store import open_tantivy
from souk.schema import Schema

__all__ = ["Index"]


class Index:
    """One index directory: `manifest.json`, `keyword/` (tantivy), `vectors/` (FAISS caches)."""

    def __init__(self, path: Path, schema: Schema, manifest: dict[str, Any], tantivy_index):
        self.path = path
        self.schema = schema
        self.manifest = manifest
        self._tantivy = tantivy_index

    @classmethod
    def create(cls, path: str | Path, schema: Schema) -> "Index":
        """Create an empty index; refuses a directory that already holds one. Vector fields' params are
        checked and completed first (model looked up, dimension read) and pinned in the manifest."""
        from souk.index.vectors.config import validate_params

        path = Path(path)
        vectors = {f.name: validate_params(f) for f in schema.vector_fields}
        if (path / MANIFEST).exists():
            raise IndexStateError(f"{path} already holds an index; open it to add documents, or delete the directory")
        if path.is_dir() and any(path.iterdir()):
            raise IndexStateError(f"{path} is not empty and holds no souk index; choose a new or empty directory")
        path.mkdir(parents=True, exist_ok=True)
        try:
            tindex = open_tantivy(path, schema, create=True)
            manifest = new_manifest(schema.to_dict(), vectors=vectors) if vectors else new_manifest(schema.to_dict())
            write_json_atomic(path / MANIFEST, manifest)
        except BaseException:
            shutil.rmtree(path / "keyword", ignore_errors=True)
            raise
        return cls(path, schema, manifest, tindex)

    @classmethod
    def open(cls, path: str | Path) -> "Index":
        """Open an existing index (the schema comes from its manifest)."""
        path = Path(path)
        manifest = read_manifest(path)
        schema = Schema.from_dict(manifest["schema"], origin=f"{path}/{MANIFEST}")
        return cls(path, schema, manifest, open_tantivy(path, schema))

    @classmethod
    def exists(cls, path: str | Path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    def writer(self, heap_mb: int = 128, threads: int = 1):
        """The single writer of this index (see `souk.index.writer.Writer`)."""
        from souk.index.writer import Writer

        return Writer(self, heap_mb=heap_mb, threads=threads)

    def searcher(self):
        """A snapshot searcher of the last commit."""
        from souk.index.searcher import Searcher

        return Searcher(self)

    def stats(self) -> dict[str, Any]:
        """Document count, fields, bytes on disk, segments, last commit time and the models of vector fields."""
        searcher = self.searcher()
        size = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        manifest = read_manifest(self.path)
        return {
            "docs": searcher.num_docs,
            "fields": [{"name": f.name, "kind": f.kind} for f in self.schema.fields.values()],
            "bytes": size,
            "segments": searcher._s.num_segments,
            "updated": manifest.get("updated"),
            "models": manifest.get("models", {}),
        }
