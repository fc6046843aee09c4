"""The index manifest (`manifest.json`): format version, schema, analyzers and models by name.

Written atomically (temp file, fsync, rename) so a crash leaves the previous manifest intact.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from souk.files import FILE_MODE, write_json_atomic  # noqa: F401  (re-exported for the index)
from souk.version import __version__
from souk.errors import IndexStateError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def new_manifest(schema_dict: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A fresh manifest; `extra` adds keys (e.g. `vectors`: the pinned params of vector fields)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"format": FORMAT_VERSION, "souk": __version__, "created": now, "updated": now, "schema": schema_dict,
            **extra}


def read_manifest(index_dir: Path) -> dict[str, Any]:
    """The manifest of `index_dir`; a clear error when missing, corrupt or of another format."""
    path = index_dir / MANIFEST
    if not path.is_file():
        raise IndexStateError(f"{index_dir} is not a souk index (no {MANIFEST}); create it with `souk index DATA "
                              f"--index {index_dir}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise IndexStateError(f"{path} cannot be read: {e.strerror}") from None
    except (ValueError, RecursionError) as e:
        raise IndexStateError(f"{path} is corrupt: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("schema"), dict):
        raise IndexStateError(f"{path} is corrupt: expected an object with a 'schema' table; rebuild the index")
    if data.get("format") != FORMAT_VERSION:
        raise IndexStateError(f"{path}: index format {data.get('format')!r}, this souk reads "
                              f"{FORMAT_VERSION}; rebuild the index")
    return data


def touch_manifest(index_dir: Path, **extra: Any) -> None:
    """Record the time of the last commit (and any extra keys) in the manifest."""
    data = read_manifest(index_dir)
    data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data.update(extra)
    write_json_atomic(index_dir / MANIFEST, data)
