"""``edgefer live SOURCE``: typer options around ``edgefer.live.pipeline.run_live`` (imported lazily)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def live_command(
    source: str = typer.Argument(..., help="Video file, camera index (0, 1, ...), image file, folder of images, or a quoted glob."),
    model: str = typer.Option("fer2013-cnn", "--model", help="Shipped model name or checkpoint path."),
    out: Optional[Path] = typer.Option(None, "--out", help="Annotated output: a video (.mp4 .avi .mkv .mov), an image (one photo), or a folder."),
    jsonl: Optional[Path] = typer.Option(None, "--jsonl", help="JSON lines, one per frame: frame, time, faces (track, box, label, confidence, probabilities)."),
    backend: str = typer.Option("auto", "--backend", help="auto (onnxruntime when installed, else torch) | onnxruntime | openvino | torch | snn (spiking, Loihi-style nets only)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Classifier threads (default: the backend's)."),
    detector: str = typer.Option("blazeface", "--detector", help="Face detector: blazeface (full range, short range where it finds nothing) | blazeface-full | blazeface-short | haar."),
    align: bool = typer.Option(False, "--align/--no-align", help="Rotate each face crop so that the eyes are level (BlazeFace finds the eyes)."),
    detect_every: int = typer.Option(8, "--detect-every", help="Run the face detector on every N-th frame; boxes are reused in between."),
    detect_width: int = typer.Option(256, "--detect-width", help="Haar only: width the frame is shrunk to for detection (0: full frame)."),
    detect_scale_factor: float = typer.Option(1.15, "--detect-scale-factor", help="Haar pyramid step (1.1: more recall, 1.2: faster)."),
    smoothing: float = typer.Option(0.6, "--smoothing", help="Weight of the past in each face's moving average of probabilities (0: none)."),
    margin: float = typer.Option(0.0, "--margin", help="Extra crop margin per side, as a fraction of the crop calibrated to the model's training data."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after this many frames (a camera otherwise runs until Ctrl-C)."),
    show: Optional[bool] = typer.Option(None, "--show/--no-show", help="Show a window (default: only when a display exists)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object instead of a line."),
):
    """Real-time FER on a video, camera or photos: annotated video, JSON lines, and a summary line with fps."""
    from edgefer.live.pipeline import LiveConfig, format_summary, run_live

    config = LiveConfig(model=model, backend=backend, threads=threads, detector=detector, align=align,
                        detect_every=detect_every,
                        detect_width=detect_width or None, detect_scale_factor=detect_scale_factor, margin=margin,
                        smoothing=smoothing, max_frames=max_frames, out=out, jsonl=jsonl, show=show)
    summary = run_live(source, config)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        print(format_summary(summary))
        written = [str(p) for p in (out, jsonl) if p is not None]
        if written:
            print(f"wrote {', '.join(written)}" + (" (the frames up to the interruption)" if summary["interrupted"] else ""))
    if summary["interrupted"]:
        raise typer.Exit(130)  # the shell's code for a run stopped by Ctrl-C
