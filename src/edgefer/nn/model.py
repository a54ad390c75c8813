"""FerModel: a trained network with everything needed to use it, saved as one safetensors file.

The file holds the weights and, in its header metadata, the ArchSpec, the input mode (gray or
edges), the class names and the scores. Loading parses JSON and tensors only: no pickled code runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from edgefer.data.preprocess import INPUT_MODES, prepare_input
from edgefer.errors import EdgeferError
from edgefer.nn.spec import ArchSpec

FORMAT = "edgefer-checkpoint/1"


# A FER CNN for edge devices has a few million parameters; a header asking for far more is corrupt or
# crafted, and building it would take the memory of the machine.
MAX_PARAMETERS = 100_000_000


def _check_tensors(spec: ArchSpec, state: dict, path: Path) -> None:
    """The ArchSpec of a header against the tensors the file really holds, before anything is allocated:
    the network is laid out on the meta device (shapes only) and compared tensor by tensor."""
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in spec.build().state_dict().items()}
    parameters = sum(math.prod(shape) for shape in expected.values())
    if parameters > MAX_PARAMETERS:
        raise EdgeferError(f"the stored ArchSpec asks for {parameters:,} parameters, more than the {MAX_PARAMETERS:,} "
                           "an edgefer model may have (corrupt or crafted header)", path)
    found = {name: tuple(t.shape) for name, t in state.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        wrong = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
        detail = (f"{wrong[0]} is {found[wrong[0]]} in the file, {expected[wrong[0]]} in the ArchSpec" if wrong else
                  f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}")
        raise EdgeferError(f"weights do not match the stored ArchSpec ({detail})", path)


@dataclass
class FerModel:
    spec: ArchSpec
    module: torch.nn.Module
    classes: tuple[str, ...]
    input_mode: str = "gray"
    info: dict = field(default_factory=dict)  # scores, data, seed, command: what a model card shows

    def __post_init__(self):
        if self.input_mode not in INPUT_MODES:
            raise EdgeferError(f"unknown input mode {self.input_mode!r}; choose one of {', '.join(INPUT_MODES)}")
        if len(self.classes) != self.spec.num_classes:
            raise EdgeferError(f"{len(self.classes)} class names for a {self.spec.num_classes}-class network")
        self.module.eval()

    @torch.no_grad()
    def logits(self, inputs: np.ndarray | torch.Tensor, batch_size: int = 512) -> np.ndarray:
        """Logits for prepared inputs (float N x 1 x 48 x 48 in [0, 1])."""
        inputs = torch.as_tensor(inputs, dtype=torch.float32)
        device = next(self.module.parameters()).device
        self.module.eval()
        out = [self.module(inputs[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(inputs), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.classes)), np.float32)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities for uint8 faces N x 48 x 48, preprocessed in this model's input mode."""
        logits = torch.from_numpy(self.logits(prepare_input(faces, self.input_mode)))
        return torch.softmax(logits, dim=1).numpy()

    def summary(self) -> dict:
        s = self.spec.summary()
        return {"params": s["params"], "macs": s["macs"], "neurons": s["neurons"]}

    def digest(self) -> str:
        """Identity of the network (architecture, input mode, weights): keys caches of its exports and results."""
        digest = hashlib.sha256()
        digest.update(repr(sorted(self.spec.to_dict().items())).encode())
        digest.update(self.input_mode.encode())
        for name, tensor in sorted(self.module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:20]

    # --- files ---------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"format": FORMAT, "arch": self.spec.to_dict(), "classes": list(self.classes),
                  "input_mode": self.input_mode, "info": self.info}
        state = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(state, str(tmp), metadata={"edgefer": json.dumps(header, sort_keys=True)})
        tmp.replace(path)  # never leave a half-written checkpoint under the real name
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FerModel":
        path = Path(path)
        if not path.is_file():
            raise EdgeferError("no such checkpoint file", path)
        try:
            state = load_file(str(path))
            with safe_open(str(path), "pt") as handle:
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise EdgeferError(f"not a readable edgefer checkpoint ({exc})", path) from None
        if "edgefer" not in metadata:
            raise EdgeferError("safetensors file without edgefer metadata (not an edgefer checkpoint)", path)
        try:
            header = json.loads(metadata["edgefer"])
        except json.JSONDecodeError as exc:
            raise EdgeferError(f"corrupt edgefer metadata ({exc})", path) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            found = header.get("format") if isinstance(header, dict) else type(header).__name__
            raise EdgeferError(f"checkpoint format {found!r}, expected {FORMAT!r}", path)
        missing = {"arch", "classes", "input_mode"} - set(header)
        if missing or not isinstance(header["arch"], dict) or not isinstance(header["classes"], list):
            raise EdgeferError(f"checkpoint metadata lacks or garbles {sorted(missing) or ['arch', 'classes']}", path)
        spec = ArchSpec.from_dict(header["arch"], str(path))
        _check_tensors(spec, state, path)
        module = spec.build()
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise EdgeferError(f"weights do not match the stored ArchSpec ({str(exc).splitlines()[0]})", path) from None
        try:
            return cls(spec, module, tuple(header["classes"]), header["input_mode"], header.get("info") or {})
        except EdgeferError as exc:
            raise EdgeferError(str(exc), path) from None
