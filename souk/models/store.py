"""Fitted models of one index: versioned directories with a manifest, one active per stage.

Layout: `DIR/models/<stage>-<n>/` (each with `manifest.json`: kind, base model, data and split,
hyper-parameters, seed, dev metrics, curve, time taken, device) and `DIR/models/active.json`
(stage -> directory name). A fit writes into a temporary directory beside them and is published
by a rename plus an atomic rewrite of `active.json`, so a failed or interrupted fit leaves the
active models untouched. Misuse: writing into a published model directory; publish a new version.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from souk.errors import ModelError
from souk.files import write_json_atomic

MODELS_DIR = "models"
ACTIVE = "active.json"
MANIFEST = "manifest.json"
_VERSION = re.compile(r"^(?P<stage>[a-z][a-z0-9_]*)-(?P<n>\d+)$")
_TMP_PREFIX = ".tmp-"


def read_model_manifest(path: Path, kind: str | None = None) -> dict[str, Any]:
    """The manifest of a model directory; with `kind`, refuse a model of another kind."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is not a souk model directory (no {MANIFEST})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{file}: unreadable manifest ({e})") from e
    if kind is not None and manifest.get("kind") != kind:
        raise ModelError(f"{path} holds a {manifest.get('kind')!r} model, not a {kind!r} model")
    return manifest


class ModelStore:
    """The `models/` directory of one index."""

    def __init__(self, index_path: str | Path):
        self.root = Path(index_path) / MODELS_DIR

    def new(self, stage: str) -> Path:
        """A fresh temporary directory to write a model of `stage` into (publish it when done)."""
        if not _VERSION.match(f"{stage}-0"):
            raise ModelError(f"stage name {stage!r} must be lowercase letters, digits and _")
        self.root.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.root, prefix=f"{_TMP_PREFIX}{stage}-{os.getpid()}-"))

    def publish(self, stage: str, workdir: Path, manifest: dict[str, Any], activate: bool = True) -> Path:
        """Move a finished `workdir` to `<stage>-<n>` with its manifest; make it active if asked."""
        manifest = {"stage": stage, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
        write_json_atomic(Path(workdir) / MANIFEST, manifest)
        n = 1 + max((int(m["n"]) for p in self._versions() if (m := _VERSION.match(p.name)) and m["stage"] == stage), default=0)
        final = self.root / f"{stage}-{n}"
        os.replace(workdir, final)
        if activate:
            self.activate(final.name)
        return final

    def activate(self, name: str) -> None:
        """Make model directory `name` (e.g. `ltr-3`) the active one of its stage."""
        m = _VERSION.match(name)
        if not m or not (self.root / name / MANIFEST).is_file():
            known = ", ".join(p.name for p in self._versions()) or "none"
            raise ModelError(f"no model {name!r} in {self.root}; models: {known}")
        write_json_atomic(self.root / ACTIVE, {**self._active(), m["stage"]: name})

    def active(self, stage: str) -> Path | None:
        """The active model directory of `stage`, or None when none was fitted."""
        name = self._active().get(stage)
        return self.root / name if name and (self.root / name / MANIFEST).is_file() else None

    def list(self) -> list[dict[str, Any]]:
        """Every published model with its manifest and whether it is active, oldest first per stage."""
        active = set(self._active().values())
        out = []
        for path in self._versions():
            manifest = read_model_manifest(path)
            out.append({"name": path.name, "active": path.name in active, "path": str(path), **manifest})
        return out

    def clean(self) -> int:
        """Remove temporary directories left by interrupted fits (of processes no longer running)."""
        removed = 0
        for p in self.root.glob(_TMP_PREFIX + "*") if self.root.is_dir() else []:
            pid = p.name[len(_TMP_PREFIX):].split("-")[1] if p.name.count("-") >= 3 else ""
            if pid.isdigit() and not _alive(int(pid)) and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def _versions(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if p.is_dir() and _VERSION.match(p.name)]
        return sorted(found, key=lambda p: (_VERSION.match(p.name)["stage"], int(_VERSION.match(p.name)["n"])))

    def _active(self) -> dict[str, str]:
        try:
            data = json.loads((self.root / ACTIVE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{self.root / ACTIVE}: unreadable ({e}); activate a model again with souk models") from e
        return data if isinstance(data, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
