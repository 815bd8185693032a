"""Per-candidate artifacts in the run folder: trained weights and FP16 diagnostics.

    weights/<arch_id>.pt          state dict of the deployed model (torch.save; loaded with
                                  ``weights_only=True``, so loading never runs pickled code)
    diagnostics/<arch_id>.json    per-layer FP16 diagnostics (see dalp_moo.precision.diagnose)

File names are canonical architecture IDs (12 hex digits), checked before use, so no name taken
from a journal or the command line can point outside the run folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from dalp_moo.errors import RunFolderError

_ARCH_ID = re.compile(r"^[0-9a-f]{12}$")


def check_arch_id(arch_id: str) -> str:
    """``arch_id`` if it is a canonical architecture ID, else a RunFolderError."""
    if not _ARCH_ID.match(arch_id):
        raise RunFolderError(f"{arch_id!r} is not an architecture ID (12 hex digits)")
    return arch_id


class ArtifactStore:
    """Weights and diagnostics of evaluated candidates under a run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.weights_dir = self.root / "weights"
        self.diagnostics_dir = self.root / "diagnostics"

    def save(self, arch_id: str, artifacts: dict[str, Any]) -> None:
        """Store what an evaluation produced (keys ``weights`` and ``diagnostics``, both optional)."""
        check_arch_id(arch_id)
        if artifacts.get("weights") is not None:
            import torch

            self.weights_dir.mkdir(parents=True, exist_ok=True)
            torch.save(artifacts["weights"], self.weights_dir / f"{arch_id}.pt")
        if artifacts.get("diagnostics") is not None:
            self.diagnostics_dir.mkdir(parents=True, exist_ok=True)
            (self.diagnostics_dir / f"{arch_id}.json").write_text(json.dumps(artifacts["diagnostics"], default=float))

    def weights(self, arch_id: str) -> dict[str, Any]:
        """The stored state dict of ``arch_id`` (safe loading: tensors only)."""
        import torch

        path = self.weights_dir / f"{check_arch_id(arch_id)}.pt"
        if not path.is_file():
            raise RunFolderError(f"no stored weights for candidate {arch_id} in {self.root}")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise RunFolderError(f"weights {path}: unreadable ({str(exc).splitlines()[0]})") from exc

    def diagnostics(self, arch_id: str) -> dict[str, Any] | None:
        """Stored diagnostics of ``arch_id``, or None."""
        path = self.diagnostics_dir / f"{check_arch_id(arch_id)}.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError as exc:
            raise RunFolderError(f"diagnostics {path}: corrupt ({exc})") from exc
