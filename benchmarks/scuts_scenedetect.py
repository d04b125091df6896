"""SCuts against the `scenedetect` package itself: do videdit's re-implemented detectors find the same cuts?

`videdit.metrics.scene_cuts` re-implements PySceneDetect's ContentDetector (threshold 27) and
AdaptiveDetector (adaptive threshold 3.0, minimum scene length 15, window 2, minimum content 15, the
SCuts of StreamingT2V) because the package depends on OpenCV builds that replace the project's
headless one. This benchmark installs the package into a throwaway virtual environment (``--venv``,
created once), runs `scenedetect.detect` there on the same video files, and compares the cut frames
with videdit's, detector by detector, on:

- the six sample clips of ../shared/videos (single shots: few or no cuts), and
- spliced clips with known cuts: four sample clips end to end (30 frames each); ShapesWorld scenes changing every 16
  frames (the scene-cut pattern of independently generated chunks); the same with one flash frame and
  with a 4-frame dissolve (where the two detectors disagree with each other by design).

Each side decodes the file itself (videdit with PyAV, scenedetect with its OpenCV backend).

    python benchmarks/scuts_scenedetect.py [--venv /tmp/videdit-scenedetect] [--version 0.7.2] [--out DIR]

Prints one row per clip and detector (cut frames of each side) and how many agree cut for cut.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
VIDEOS = ROOT.parent / "shared" / "videos"

# Runs in the throwaway environment: cut frames of both detectors with their defaults (threshold 27).
REFERENCE = r"""
import json, sys
import scenedetect
from scenedetect import AdaptiveDetector, ContentDetector, detect

out = {"version": scenedetect.__version__}
for path in sys.argv[1:]:
    out[path] = {name: [start.get_frames() for start, _ in detect(path, make())[1:]]
                 for name, make in (("content", ContentDetector), ("adaptive", AdaptiveDetector))}
print(json.dumps(out))
"""


def ensure_venv(venv: Path, version: str) -> Path:
    """The throwaway environment's python, with scenedetect==version and a headless OpenCV."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import scenedetect, cv2; print(scenedetect.__version__)"],
                           capture_output=True, text=True)
    if probe.returncode != 0 or probe.stdout.strip() != version:
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"scenedetect=={version}",
                        "opencv-python-headless"], check=True)
    return python


def build_clips(folder: Path) -> dict[str, Path]:
    """The clips of the comparison (module docstring), written as mp4 into ``folder``."""
    from videdit.shapes.train import clip_batch
    from videdit.video import read_clip, resize_frames, write_video

    clips = {p.stem: p for p in sorted(VIDEOS.glob("*.mp4"))}
    size = (256, 144)
    parts = [resize_frames(read_clip(VIDEOS / f"{name}.mp4", frames=30).frames, size)
             for name in ("wolf", "puff", "woman-running", "trucks-race")]
    spliced = {"wolf|puff|woman-running|trucks": np.concatenate(parts)}
    scenes = clip_batch(np.random.default_rng(0), 6, 16).frames  # (6, 16, 64, 64, 3): six scenes
    cuts = np.concatenate(list(scenes))
    spliced["shapes, cut every 16"] = cuts
    flash = cuts.copy()
    flash[40] = 255  # one white frame inside the third scene
    spliced["shapes, cut every 16, flash at 40"] = flash
    a, b = scenes[0].astype(np.float32), scenes[1].astype(np.float32)
    dissolve = [a[i] * (1 - w) + b[i] * w for i, w in enumerate(np.linspace(0, 1, 6)[1:-1])]
    spliced["shapes, 4-frame dissolve"] = np.concatenate(
        [scenes[0], np.stack(dissolve).round().astype(np.uint8), scenes[1], scenes[2]])
    for name, frames in spliced.items():
        path = folder / (name.replace("|", "-").replace(", ", "-").replace(" ", "-") + ".mp4")
        write_video(path, frames, 24, overwrite=True)
        clips[name] = path
    return clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", default=str(Path(tempfile.gettempdir()) / "videdit-scenedetect"),
                    help="throwaway virtual environment for the scenedetect package (created if missing)")
    ap.add_argument("--version", default="0.7.2", help="scenedetect version to compare with (default 0.7.2)")
    ap.add_argument("--out", help="keep the spliced clips here (default: a temporary folder)")
    a = ap.parse_args()

    from videdit import metrics
    from videdit.video import read_clip

    python = ensure_venv(Path(a.venv), a.version)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(a.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        clips = build_clips(folder)
        done = subprocess.run([str(python), "-c", REFERENCE, *map(str, clips.values())], capture_output=True,
                              text=True, check=True)
        reference = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"# videdit.metrics.scene_cuts against scenedetect {reference['version']} (detect(), defaults)")
        print(f"{'clip':36s} {'frames':>6s} {'detector':9s} {'videdit cuts':24s} {'scenedetect cuts':24s} same")
        agree = total = 0
        for name, path in clips.items():
            frames = read_clip(path).frames
            for detector in ("content", "adaptive"):
                ours = metrics.scene_cuts(frames, detector=detector).detail["cuts"]
                theirs = reference[str(path)][detector]
                same = ours == theirs
                agree, total = agree + same, total + 1
                print(f"{name:36s} {len(frames):6d} {detector:9s} {str(ours):24s} {str(theirs):24s} "
                      f"{'yes' if same else 'NO'}", flush=True)
        print(f"\n{agree} of {total} (clip, detector) pairs agree cut for cut, over {len(clips)} clips")


if __name__ == "__main__":
    main()
