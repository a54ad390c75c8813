"""How often ``edgefer live`` labels the shared real videos and photos right, next to the typical pipeline.

Ground truth: ``benchmarks/live_labels.json``, annotated by eye (frame ranges of each video with the
expression a person sees, or ``null`` where no face is in the frame; the faces of each photo with an
approximate box and expression). Segments and faces marked ``"ambiguous": true`` are reported but
never scored. The annotation is small and one person's reading: treat the numbers as a sanity check
on real footage, not as a dataset accuracy.

Pipelines, all run in the same invocation on every clip and with each model of ``--models``:

- ``edgefer (blazeface)``: ``run_live`` as ``edgefer live`` runs it by default (detector every 8th
  frame, boxes reused in between, crops framed as the model's training data, smoothing per track);
- ``edgefer (blazeface, eyes levelled)``: the same with ``align=True`` (is levelling the eyes worth it?);
- ``edgefer (haar)``: the same with ``detector="haar"``;
- ``typical``: Haar on every full frame + the same model on the raw Haar box crop, no smoothing
  (``typical_pipeline`` of ``benchmarks/live_speed.py``).
- ``snn`` (only when asked for, Loihi-style models): the default pipeline with ``--backend snn``, the
  model run as its spiking net in Loihi's integer mode (simulated).

Per video frame the label of the largest reported face is compared with the annotation:

- expression accuracy: correct frames / frames of scored expression segments; a frame where no face
  was reported counts as wrong (``accuracy_when_found`` in the JSON leaves those frames out);
- face found: frames with a reported face / frames of scored expression segments;
- false faces: frames with a reported face / frames of scored no-face (``null``) segments.

Photos: ``run_live`` on each photo (every face reported with its box); the typical pipeline runs
Haar on the full grey photo and the model on each raw box crop. Reported boxes are matched one to
one to the annotated faces (greedily by IoU; a box counts as a match when IoU >= 0.25 or its
centre is within half the annotated box side of the annotated centre). Reported per photo: correct
labels / scored faces, faces found, and the reported boxes that matched no annotated face.

Writes runs/bench/live_labels.json (or --out; includes a per-segment / per-face breakdown) and
prints a table.
    python benchmarks/live_labels.py [--models fer2013-cnn runs/zoo/fer2013-cnn-distilled-3.safetensors]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from edgefer.data.faces import crop_face, get_detector
from edgefer.data.loaders import default_data_roots
from edgefer.live.pipeline import LiveConfig, run_live
from edgefer.nn.zoo import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_speed import typical_pipeline  # noqa: E402  (benchmarks/ is not a package)

LABELS_FILE = Path(__file__).resolve().parent / "live_labels.json"
PIPELINES = ("blazeface", "blazeface-align", "haar", "typical", "snn")
# snn (the model as its simulated Loihi spiking net) only runs Loihi-style models: asked for by name.
DEFAULT_PIPELINES = PIPELINES[:4]
PIPELINE_NAMES = {"blazeface": "edgefer (blazeface)", "blazeface-align": "edgefer (blazeface, eyes levelled)",
                  "haar": "edgefer (haar)", "typical": "typical (Haar full frame + box crop)",
                  "snn": "edgefer (blazeface, --backend snn)"}
# The edgefer pipelines: the live settings each one changes from the defaults.
LIVE_SETTINGS = {"blazeface": {"detector": "blazeface"}, "blazeface-align": {"detector": "blazeface", "align": True},
                 "haar": {"detector": "haar"}, "snn": {"detector": "blazeface", "backend": "snn"}}
MATCH_IOU = 0.25
MATCH_CENTRE = 0.5  # fraction of the annotated box side


def find_data_root(given: Path | None) -> Path:
    roots = [given] if given is not None else default_data_roots()
    for root in roots:
        if (root / "video").is_dir() or (root / "images").is_dir():
            return root
    raise SystemExit(f"shared data not found in {', '.join(map(str, roots))}; pass --data")


def model_label(model: str) -> str:
    return Path(model).stem if ("/" in model or model.endswith(".safetensors")) else model


# --- videos -----------------------------------------------------------------------------------

def edgefer_video_labels(path: Path, model: str, pipeline: str, threads: int | None) -> tuple[dict, dict]:
    """Frame index -> the largest reported face's label (None: no face), and the run's summary."""
    labels: dict[int, str | None] = {}

    def keep(frame, faces):
        labels[frame.index] = faces[0].label if faces else None  # largest face first

    summary = run_live(str(path), LiveConfig(model=model, threads=threads, **LIVE_SETTINGS[pipeline]), on_frame=keep)
    return labels, summary


def typical_video_labels(path: Path, model: str) -> tuple[dict, dict]:
    row, per_frame = typical_pipeline(path, model, None)
    return dict(enumerate(per_frame)), row


def score_video(segments: list[dict], predicted: dict) -> dict:
    """Per-segment and total agreement of the per-frame labels with the annotated segments."""
    total = Counter()
    rows = []
    for seg in segments:
        frames = range(seg["start"], seg["end"] + 1)
        got = [predicted.get(i) for i in frames]  # a frame never reported (broken) counts as no face
        found = sum(g is not None for g in got)
        row = {"start": seg["start"], "end": seg["end"], "label": seg["label"],
               "ambiguous": bool(seg.get("ambiguous")), "frames": len(got), "face_found": found,
               "predicted": dict(Counter("none" if g is None else g for g in got).most_common())}
        if seg["label"] is None:
            row["false_face_rate"] = round(found / len(got), 4)
            row["frames_with_face"] = [i for i, g in zip(frames, got) if g is not None][:100]
            if not row["ambiguous"]:
                total["noface_frames"] += len(got)
                total["false_faces"] += found
        else:
            correct = sum(g == seg["label"] for g in got)
            row.update(correct=correct, accuracy=round(correct / len(got), 4),
                       face_found_rate=round(found / len(got), 4))
            if not row["ambiguous"]:
                total["expr_frames"] += len(got)
                total["correct"] += correct
                total["found"] += found
        rows.append(row)
    return {**rates(total), "segments": rows}


def rates(total: Counter) -> dict:
    e, n = total["expr_frames"], total["noface_frames"]
    return {"expression_frames": e, "correct": total["correct"], "found": total["found"],
            "accuracy": round(total["correct"] / e, 4) if e else None,
            "accuracy_when_found": round(total["correct"] / total["found"], 4) if total["found"] else None,
            "face_found_rate": round(total["found"] / e, 4) if e else None,
            "noface_frames": n, "false_faces": total["false_faces"],
            "false_face_rate": round(total["false_faces"] / n, 4) if n else None}


# --- photos -----------------------------------------------------------------------------------

def edgefer_photo_faces(path: Path, model: str, pipeline: str, threads: int | None) -> list[tuple]:
    found: list[tuple] = []

    def keep(frame, faces):
        found.extend((tuple(int(v) for v in f.box), f.label, round(f.confidence, 3)) for f in faces)

    run_live(str(path), LiveConfig(model=model, threads=threads, **LIVE_SETTINGS[pipeline]), on_frame=keep)
    return found


def typical_photo_faces(path: Path, fer_model) -> list[tuple]:
    """Haar on the full grey photo, the model on each raw box crop (as ``typical_pipeline`` does)."""
    gray = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    found = []
    for face in get_detector("haar").detect(gray):
        probs = fer_model.predict_proba(crop_face(gray, face)[None])[0]
        best = int(np.argmax(probs))
        found.append((tuple(int(v) for v in face.box), fer_model.classes[best], round(float(probs[best]), 3)))
    return found


def iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a, b) -> float:
    """Centre distance in units of the annotated box ``a``'s side."""
    ca = (a[0] + a[2] / 2, a[1] + a[3] / 2)
    cb = (b[0] + b[2] / 2, b[1] + b[3] / 2)
    return float(np.hypot(ca[0] - cb[0], ca[1] - cb[1]) / ((a[2] + a[3]) / 2))


def match_faces(annotated: list[dict], reported: list[tuple]) -> dict[int, int]:
    """Annotated face index -> reported face index, one to one, best IoU (then nearest centre) first."""
    pairs = []
    for i, face in enumerate(annotated):
        for j, (box, _, _) in enumerate(reported):
            overlap, dist = iou(face["box"], box), centre_distance(face["box"], box)
            if overlap >= MATCH_IOU or dist <= MATCH_CENTRE:
                pairs.append((-overlap, dist, i, j))
    matched: dict[int, int] = {}
    used: set[int] = set()
    for _, _, i, j in sorted(pairs):
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def score_photo(annotated: list[dict], reported: list[tuple]) -> dict:
    matched = match_faces(annotated, reported)
    faces, scored, found, correct = [], 0, 0, 0
    for i, face in enumerate(annotated):
        hit = reported[matched[i]] if i in matched else None
        row = {"box": face["box"], "label": face["label"], "ambiguous": bool(face.get("ambiguous")),
               "reported_box": list(hit[0]) if hit else None, "predicted": hit[1] if hit else None,
               "confidence": hit[2] if hit else None,
               "iou": round(iou(face["box"], hit[0]), 3) if hit else None}
        if not row["ambiguous"]:
            scored += 1
            found += hit is not None
            correct += bool(hit) and hit[1] == face["label"]
        faces.append(row)
    extra = [{"box": list(r[0]), "predicted": r[1]} for j, r in enumerate(reported) if j not in matched.values()]
    return {"scored_faces": scored, "found": found, "correct": correct,
            "accuracy": round(correct / scored, 4) if scored else None,
            "ambiguous_found": sum(f["ambiguous"] and f["predicted"] is not None for f in faces),
            "ambiguous_faces": sum(f["ambiguous"] for f in faces),
            "reported": len(reported), "unmatched_boxes": extra, "faces": faces}


# --- output -----------------------------------------------------------------------------------

def pct(num: int, den: int) -> str:
    return f"{100 * num / den:.1f} % ({num}/{den})" if den else "-"


def print_table(videos: list[dict], totals: list[dict], photos: list[dict]) -> None:
    table = Table(title="edgefer live vs typical pipeline on the hand-annotated shared clips "
                        "(largest face per frame; ambiguous segments not scored)")
    for col in ("clip", "pipeline", "model", "frames scored", "expression accuracy", "face found (face frames)",
                "false faces (no-face frames)"):
        table.add_column(col, justify="left" if col in ("clip", "pipeline", "model") else "right")
    for k, row in enumerate(videos + totals):
        if k == len(videos) and totals:
            table.add_section()
        table.add_row(row["clip"], PIPELINE_NAMES[row["pipeline"]], model_label(row["model"]),
                      f"{row['expression_frames']} + {row['noface_frames']} no-face",
                      pct(row["correct"], row["expression_frames"]), pct(row["found"], row["expression_frames"]),
                      pct(row["false_faces"], row["noface_frames"]))
    if photos:
        table.add_section()
    for row in photos:
        extra = len(row["unmatched_boxes"])
        amb = f", ambiguous {row['ambiguous_found']}/{row['ambiguous_faces']} found" if row["ambiguous_faces"] else ""
        table.add_row(row["clip"], PIPELINE_NAMES[row["pipeline"]], model_label(row["model"]),
                      f"{row['scored_faces']} faces{amb}", f"{row['correct']}/{row['scored_faces']}" if row["scored_faces"] else "-",
                      f"{row['found']}/{row['scored_faces']}" if row["scored_faces"] else "-",
                      f"{extra} other box{'es' if extra != 1 else ''}")
    Console(width=220).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["fer2013-cnn"],
                        help="shipped model names or checkpoint paths (e.g. runs/zoo/fer2013-cnn-distilled-3.safetensors)")
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(DEFAULT_PIPELINES),
                        help="snn needs a Loihi-style model (default: all but snn)")
    parser.add_argument("--labels", type=Path, default=LABELS_FILE, help="the annotations (default benchmarks/live_labels.json)")
    parser.add_argument("--data", type=Path, default=None, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--clips", nargs="*", default=None,
                        help="only these annotated clips (paths as in the labels file, or file names)")
    parser.add_argument("--no-photos", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="classifier / torch threads (default 1: light on a busy machine; 0: the backend's default)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()

    annotations = json.loads(args.labels.read_text())
    root = find_data_root(args.data)
    threads = args.threads or None
    if threads:
        torch.set_num_threads(threads)

    def wanted(clip: str) -> bool:
        return args.clips is None or clip in args.clips or Path(clip).name in args.clips

    digests = {model: load_model(model).digest() for model in args.models}
    for model in args.models:
        same = [m for m in args.models if m != model and digests[m] == digests[model]]
        if same and args.models.index(model) < args.models.index(same[0]):
            print(f"note: {model} and {', '.join(same)} are the same network (digest {digests[model]}): identical rows")

    start = time.perf_counter()
    videos, photos, skipped = [], [], []

    def annotated(section: str):
        """(clip, annotation, path) of the wanted clips of one section whose file exists."""
        for clip, entry in annotations.get(section, {}).items():
            if not wanted(clip):
                continue
            if not (root / clip).is_file():
                skipped.append(clip)
                continue
            yield clip, entry, root / clip

    for clip, entry, path in annotated("videos"):
        for model in args.models:
            for pipeline in args.pipelines:
                if pipeline == "typical":
                    predicted, run = typical_video_labels(path, model)
                else:
                    predicted, run = edgefer_video_labels(path, model, pipeline, threads)
                frames, fps = run["frames"], run["fps"]
                score = score_video(entry["segments"], predicted)
                if entry.get("frames") is not None and frames != entry["frames"]:
                    score["warning"] = f"{frames} frames processed, {entry['frames']} annotated"
                videos.append({"clip": clip, "pipeline": pipeline, "model": model, "frames_processed": frames,
                               "fps": fps, **score})
    totals = []
    for model in args.models:
        for pipeline in args.pipelines:
            total = Counter()
            for row in videos:
                if row["model"] == model and row["pipeline"] == pipeline:
                    for key, field in (("expr_frames", "expression_frames"), ("correct", "correct"), ("found", "found"),
                                       ("noface_frames", "noface_frames"), ("false_faces", "false_faces")):
                        total[key] += row[field]
            if total:
                totals.append({"clip": "all videos", "pipeline": pipeline, "model": model, **rates(total)})

    if not args.no_photos:
        for clip, entry, path in annotated("photos"):
            for model in args.models:
                fer_model = load_model(model) if "typical" in args.pipelines else None
                for pipeline in args.pipelines:
                    reported = (typical_photo_faces(path, fer_model) if pipeline == "typical"
                                else edgefer_photo_faces(path, model, pipeline, threads))
                    photos.append({"clip": clip, "pipeline": pipeline, "model": model,
                                   **score_photo(entry["faces"], reported)})

    result = {
        "labels_file": str(args.labels), "annotated_by": annotations.get("annotated_by"), "data": str(root),
        "models": args.models, "model_digests": digests, "pipelines": {p: PIPELINE_NAMES[p] for p in args.pipelines},
        "method": {"video": "per frame, the largest reported face's label vs the annotated segment; ambiguous "
                            "segments not scored; a frame without a reported face counts as wrong",
                   "photo": f"reported boxes matched one to one to annotated faces (IoU >= {MATCH_IOU} or centre "
                            f"within {MATCH_CENTRE} of the annotated box side)"},
        "videos": videos, "totals": totals, "photos": photos, "skipped_missing": skipped,
        "machine": {"cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
                    "platform": platform.platform(), "opencv": cv2.__version__, "python": platform.python_version()},
        "wall_s": round(time.perf_counter() - start, 1), "source": "measured",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "live_labels.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(videos, totals, photos)
    if skipped:
        print(f"not found in {root}: {', '.join(skipped)}")
    print(f"wrote {out} ({result['wall_s']} s)")


if __name__ == "__main__":
    main()
