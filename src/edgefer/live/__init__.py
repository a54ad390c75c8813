"""Real-time facial expression recognition on videos, cameras and photos (``edgefer live``).

Names are loaded on first use so that ``edgefer --help`` does not import OpenCV and torch.
"""

from importlib import import_module

_EXPORTS = {"FaceResult": "pipeline", "LiveConfig": "pipeline", "LivePipeline": "pipeline", "format_summary": "pipeline",
            "run_live": "pipeline", "Frame": "sources", "open_source": "sources"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"edgefer.live.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'edgefer.live' has no attribute {name!r}")
