"""End-to-end speed of ``edgefer live`` against a typical FER pipeline, measured in the same run.

typical: decode -> grey -> Haar on every full frame -> for each face: crop, torch CNN (one call per
face). edgefer live: decode in a reader thread, the face detector (BlazeFace by default, and Haar on a
256-px-wide grey copy for comparison) every 8th frame, boxes reused in between, crops framed as the
model's training data, all faces of a frame in one ONNX Runtime call, smoothing per face track.
Both decode the video themselves (decode is included) and use the same model (torch pipelines with
``--torch-threads``, default 1, torch's fastest setting on two busy cores); the pipelines run
one after the other, ``--repeats`` times interleaved, and the median FPS of each is reported.

FPS is wall-clock, so it depends on whatever else the machine runs; frames/CPU-s (frames per second
of CPU time used by all threads of the pipeline) tells what the pipeline itself costs: on an idle
machine one core gives about that FPS, two cores more (decoding overlaps the rest).

Writes runs/bench/live_speed.json (or --out) and prints a table. Every figure is measured.
    python benchmarks/live_speed.py [--video PATH] [--model fer2013-cnn] [--repeats 1] [--max-frames N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from edgefer.data.faces import crop_face, get_detector
from edgefer.data.loaders import default_data_roots
from edgefer.live.pipeline import LiveConfig, StageTimes, run_live
from edgefer.nn.zoo import load_model

GOAL_FPS = 250.0
GOAL_SPEEDUP = 2.0


def default_video() -> Path:
    for root in default_data_roots():
        candidate = root / "video" / "WolfgangLanger_Pexels.mp4"
        if candidate.is_file():
            return candidate
    raise SystemExit("WolfgangLanger_Pexels.mp4 not found in ../shared/data/video; pass --video")


def typical_pipeline(video: Path, model_name: str, max_frames: int | None) -> tuple[dict, list]:
    """The usual tutorial pipeline: Haar on every full frame, one torch call per face."""
    model = load_model(model_name)
    haar = get_detector("haar")
    times = StageTimes()
    labels_per_frame = []
    start, cpu_start = time.perf_counter(), time.process_time()
    capture = cv2.VideoCapture(str(video))
    frames = frames_with_face = faces_total = 0
    while max_frames is None or frames < max_frames:
        t0 = time.perf_counter()
        ok, image = capture.read()
        t1 = time.perf_counter()
        if not ok:
            break
        times.add("decode", t1 - t0)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        t2 = time.perf_counter()
        times.add("gray", t2 - t1)
        boxes = haar.detect(gray)
        t3 = time.perf_counter()
        times.add("detect", t3 - t2)
        labels = []
        for box in boxes:
            probs = model.predict_proba(crop_face(gray, box)[None])[0]
            labels.append(model.classes[int(np.argmax(probs))])
        t4 = time.perf_counter()
        if boxes:
            times.add("classify", t4 - t3)
        times.add("frame", t4 - t0)
        labels_per_frame.append(labels[0] if labels else None)  # largest face first
        frames += 1
        frames_with_face += bool(boxes)
        faces_total += len(boxes)
    capture.release()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"name": "typical: Haar every full frame + torch per face", "backend": "torch", "frames": frames,
            "faces": faces_total, "face_found_rate": round(frames_with_face / max(frames, 1), 4),
            "wall_s": round(wall, 3), "fps": round(frames / wall, 2), "cpu_s": round(cpu, 3),
            "frames_per_cpu_s": round(frames / cpu, 2), "latency_ms": times.summary_ms()}, labels_per_frame


def edgefer_pipeline(video: Path, model_name: str, backend: str, max_frames: int | None,
                     detector: str = "blazeface") -> tuple[dict, list]:
    labels_per_frame = []

    def keep_label(frame, faces):
        labels_per_frame.append(faces[0].label if faces else None)  # largest face first

    config = LiveConfig(model=model_name, backend=backend, max_frames=max_frames, detector=detector)
    summary = run_live(str(video), config, on_frame=keep_label)
    row = {"name": f"edgefer live ({detector}, {backend})", **{k: summary[k] for k in (
        "backend", "detector", "frames", "faces", "face_found_rate", "wall_s", "fps", "cpu_s", "frames_per_cpu_s", "latency_ms",
        "setup_s", "detect_every", "detect_width", "detections_run", "tracks", "broken_frames")}}
    row["detect_scale_factor"] = config.detect_scale_factor
    row["smoothing"] = config.smoothing
    return row, labels_per_frame


def agreement(a: list, b: list) -> float | None:
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    return round(sum(x == y for x, y in pairs) / len(pairs), 4) if pairs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None)
    parser.add_argument("--model", default="fer2013-cnn")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of each pipeline; the median FPS is reported")
    parser.add_argument("--max-frames", type=int, default=None, help="limit every pipeline to the first N frames")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads for the torch pipelines (0: torch's default). Default 1: on 2 busy cores "
                             "torch's default of one thread per core was 10-25x slower per face here, which would "
                             "flatter the speed-up")
    parser.add_argument("--no-torch-variant", action="store_true", help="skip edgefer live with the torch backend")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    video = args.video or default_video()

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    load_before = os.getloadavg()
    # Export the ONNX model once before timing: setup is not part of the per-frame cost.
    run_live(str(video), LiveConfig(model=args.model, backend="onnxruntime", max_frames=2))
    variants = {"onnxruntime": ("onnxruntime", "blazeface"), "haar": ("onnxruntime", "haar")}
    if not args.no_torch_variant:
        variants["torch"] = ("torch", "blazeface")
    runs: dict[str, list] = {}
    labels: dict[str, list] = {}
    for _ in range(args.repeats):
        row, labels["typical"] = typical_pipeline(video, args.model, args.max_frames)
        runs.setdefault("typical", []).append(row)
        for key, (backend, detector) in variants.items():
            row, labels[key] = edgefer_pipeline(video, args.model, backend, args.max_frames, detector)
            runs.setdefault(key, []).append(row)
    rows = {}
    for key, rs in runs.items():
        fps = [r["fps"] for r in rs]
        best = sorted(rs, key=lambda r: r["fps"])[len(rs) // 2]  # the median run, all of its numbers
        rows[key] = {**best, "fps": float(np.median(fps)), "fps_runs": fps, "source": "measured"}
    speedup = rows["onnxruntime"]["fps"] / rows["typical"]["fps"]
    result = {
        "video": str(video), "model": args.model, "frames": rows["onnxruntime"]["frames"],
        "machine": {"cpus": os.cpu_count(), "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in os.getloadavg()], "platform": platform.platform(),
                    "opencv": cv2.__version__, "python": platform.python_version()},
        "pipelines": list(rows.values()),
        "speedup_vs_typical": round(speedup, 2),
        "label_agreement_with_typical": agreement(labels["onnxruntime"], labels["typical"]),
        "goals": {"fps": GOAL_FPS, "speedup": GOAL_SPEEDUP, "fps_met": rows["onnxruntime"]["fps"] >= GOAL_FPS,
                  "speedup_met": speedup >= GOAL_SPEEDUP},
        "torch_threads": torch.get_num_threads(),
        "source": "measured",
    }
    try:
        import onnxruntime

        result["machine"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "live_speed.json"
    path.write_text(json.dumps(result, indent=2) + "\n")

    table = Table(title=f"{video.name}, {result['frames']} frames, model {args.model}, {os.cpu_count()} CPUs "
                        f"(load {load_before[0]:.1f} before)")
    stages = ("decode", "detect", "crop", "classify", "frame")
    for col in ("pipeline", "FPS", "frames/CPU-s", "face found", *[f"{s} ms p50/p90" for s in stages]):
        table.add_column(col, justify="left" if col == "pipeline" else "right")
    for row in rows.values():
        lat = row["latency_ms"]
        cells = [f"{lat[s]['median']:.2f}/{lat[s]['p90']:.2f}" + (f" x{lat[s]['n']}" if s == "detect" else "")
                 if s in lat else "-" for s in stages]
        table.add_row(row["name"], f"{row['fps']:.1f}", f"{row['frames_per_cpu_s']:.1f}", f"{100 * row['face_found_rate']:.1f} %", *cells)
    Console(width=200).print(table)
    print(f"speed-up over typical: {speedup:.2f}x (goal {GOAL_SPEEDUP:.0f}x: {'met' if result['goals']['speedup_met'] else 'NOT met'}); "
          f"{rows['onnxruntime']['fps']:.1f} FPS (goal {GOAL_FPS:.0f}: {'met' if result['goals']['fps_met'] else 'NOT met'}); "
          f"label agreement with typical {result['label_agreement_with_typical']}; wrote {path}")


if __name__ == "__main__":
    main()
