"""The shipped model zoo: small checkpoints trained by this project, each with a model card."""

from __future__ import annotations

import json
from pathlib import Path

from edgefer.errors import EdgeferError

ZOO_DIR = Path(__file__).resolve().parent.parent / "models"


def shipped_models() -> list[str]:
    return sorted(p.stem for p in ZOO_DIR.glob("*.safetensors"))


def model_card(name: str) -> dict:
    path = ZOO_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_model(name_or_path: str | Path):
    """A shipped model by name, or a checkpoint file by path (a FerModel)."""
    from edgefer.nn.model import FerModel

    if str(name_or_path) in shipped_models():
        return FerModel.load(ZOO_DIR / f"{name_or_path}.safetensors")
    path = Path(name_or_path)
    if path.exists():
        return FerModel.load(path)
    raise EdgeferError(f"unknown model {str(name_or_path)!r}: not a shipped model in {ZOO_DIR} "
                       f"({', '.join(shipped_models()) or 'none'}) nor a checkpoint file at {path.resolve()}")
