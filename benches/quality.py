#!/usr/bin/env python3
"""Recall / false-box benchmark of `veil redact` against the hand-checked labels in ../shared.

Runs from anywhere with the system Python 3.11 (stdlib only); the small-face stress set is drawn
by Pillow from the bench venv of benches/compare_deface.py (created on first use if missing):

    python3 benches/quality.py                  # labelled photos + small-face stress set
    python3 benches/quality.py --skip-stress    # labelled photos only
    python3 benches/quality.py --work /tmp/q --keep-work

Part 1 -- labelled photos (images/faces, images/persons, images/negatives; copied into one input
folder, one veil run per config):
  (a) faces   `--detect faces`                          -> face boxes (centerface)
  (b) persons `--detect persons --no-head-fallback`     -> person boxes (--person-model, default
      nanodet-g)
  (c) fused   `--detect faces,persons`                  -> faces scored with centerface +
      head-fallback boxes (faces found ONLY thanks to the fallback are counted), persons with
      the person boxes.
  Faces are scored on images/faces (labels/faces.json), persons on images/faces + images/persons
  (labels/persons.json); every box on images/negatives is a false box.

Part 2 -- small-face stress set, generated deterministically (random.Random(1234)): every
non-hard, non-ignored labelled face of images/faces is cropped with a 1.6x margin, resized
(Lanczos) so that its box is 24, 16, 12 or 9 px on its short side and pasted with a soft edge at a
jittered grid position onto 1280x960 canvases (one canvas per size with a mid-grey noise
background, one with a heavily blurred negatives photo). Scored for veil defaults (faces,
multi-scale) and `--scales single`.

Matching: the rule of shared/reference/evalx.py (greedy by score, a detection takes the unmatched
non-ignore GT with the best IoU >= thr, detections on ignore boxes are neither TP nor FP,
duplicates are FP) with IoU >= 0.3 for faces and >= 0.5 for persons.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no benches/__pycache__ from the import below
import compare_deface as cd  # noqa: E402  (venv helpers, iou/inside of the evalx rule)

FACE_IOU = 0.3
PERSON_IOU = 0.5
SEED = 1234
STRESS_SIZES = [24, 16, 12, 9]
IMAGE_EXTS = cd.IMAGE_EXTS
FOLDERS = ["faces", "persons", "negatives"]

CONFIGS = [
    # key, description, extra args
    ("faces", "faces (--detect faces)", ["--detect", "faces"]),
    ("persons", "persons (--detect persons --no-head-fallback)",
     ["--detect", "persons", "--no-head-fallback"]),
    ("fused", "fused (--detect faces,persons)", ["--detect", "faces,persons"]),
]
STRESS_CONFIGS = [
    ("multi", "veil defaults (faces, multi-scale)", []),
    ("single", "veil --scales single", ["--scales", "single"]),
]

# ---------------------------------------------------------------- stress-set helper (venv python)
STRESS_HELPER = r'''
import json, os, random, sys
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps
faces_dir, labels_path, neg_dir, out_dir, cfg = sys.argv[1:6]
cfg = json.loads(cfg)
W, H = cfg["canvas"]
COLS, ROWS = cfg["grid"]
MARGIN = cfg["margin"]
rng = random.Random(cfg["seed"])
labels = json.load(open(labels_path))
img_dir = os.path.join(out_dir, "images")
os.makedirs(img_dir, exist_ok=True)

# The source faces, in a fixed order: file name, then label order.
faces = []
cache = {}
for name in sorted(labels):
    for k, g in enumerate(labels[name]):
        if g.get("hard") or g.get("ignore"):
            continue
        if name not in cache:
            im = ImageOps.exif_transpose(Image.open(os.path.join(faces_dir, name)))  # labels are upright
            cache[name] = im.convert("RGB")
        faces.append((name, k, g["box"]))

def crop_face(name, box):
    im = cache[name]
    x1, y1, x2, y2 = box
    cx, cy, bw, bh = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    ox1 = max(0, int(cx - MARGIN * bw / 2)); oy1 = max(0, int(cy - MARGIN * bh / 2))
    ox2 = min(im.width, int(round(cx + MARGIN * bw / 2))); oy2 = min(im.height, int(round(cy + MARGIN * bh / 2)))
    return im.crop((ox1, oy1, ox2, oy2)), (x1 - ox1, y1 - oy1, x2 - ox1, y2 - oy1)

def noise_bg():
    n = W * H
    fine = Image.frombytes("L", (W, H), rng.randbytes(n)).point(lambda v: 121 + v * 14 // 256)  # +-7
    low = Image.frombytes("L", (W // 64, H // 64), rng.randbytes((W // 64) * (H // 64)))
    low = low.point(lambda v: 108 + v * 40 // 256).resize((W, H), Image.BICUBIC)          # +-20, smooth
    g = ImageChops.add(fine, low, scale=1.0, offset=-128)
    return g.convert("RGB")

negs = sorted(f for f in os.listdir(neg_dir) if os.path.splitext(f)[1].lower() in
              {".jpg", ".jpeg", ".png", ".bmp", ".webp"})

def photo_bg():
    name = rng.choice(negs)
    im = ImageOps.exif_transpose(Image.open(os.path.join(neg_dir, name))).convert("RGB")
    im = ImageOps.fit(im, (W, H), Image.BICUBIC)
    return im.filter(ImageFilter.GaussianBlur(cfg["bg_blur"])), name

cw, ch = W // COLS, H // ROWS
out_labels, manifest = {}, []
for size in cfg["sizes"]:
    for bg_kind in ("noise", "photo"):
        if bg_kind == "noise":
            canvas, bg_src = noise_bg(), None
        else:
            canvas, bg_src = photo_bg()
        cells = rng.sample(range(COLS * ROWS), len(faces))
        order = list(range(len(faces)))
        rng.shuffle(order)
        fname = f"s{size:02d}_{bg_kind}.png"
        boxes = []
        for cell, fi in zip(cells, order):
            name, k, box = faces[fi]
            crop, fb = crop_face(name, box)
            f = size / min(box[2] - box[0], box[3] - box[1])
            nw, nh = max(1, round(crop.width * f)), max(1, round(crop.height * f))
            sx, sy = nw / crop.width, nh / crop.height
            small = crop.resize((nw, nh), Image.LANCZOS)
            # soft edge, inside the margin (the face box itself is fully opaque)
            r = max(1, round(0.12 * min(nw, nh)))
            mask = Image.new("L", (nw, nh), 0)
            ImageDraw.Draw(mask).rectangle([r, r, nw - 1 - r, nh - 1 - r], fill=255)
            mask = mask.filter(ImageFilter.GaussianBlur(r / 2))
            col, row = cell % COLS, cell // COLS
            px = col * cw + rng.randint(0, max(0, cw - nw))
            py = row * ch + rng.randint(0, max(0, ch - nh))
            canvas.paste(small, (px, py), mask)
            lb = [round(px + fb[0] * sx, 2), round(py + fb[1] * sy, 2),
                  round(px + fb[2] * sx, 2), round(py + fb[3] * sy, 2)]
            boxes.append({"box": lb, "hard": False, "src": f"{name}#{k}",
                          "paste": [px, py, px + nw, py + nh]})
        canvas.save(os.path.join(img_dir, fname))
        out_labels[fname] = boxes
        manifest.append({"file": fname, "size": size, "background": bg_kind, "background_src": bg_src,
                         "faces": len(boxes)})
json.dump(out_labels, open(os.path.join(out_dir, "labels.json"), "w"), indent=1)
json.dump({"config": cfg, "canvases": manifest, "source_faces": len(faces)},
          open(os.path.join(out_dir, "manifest.json"), "w"), indent=1)
print(f"{len(manifest)} canvases, {len(faces)} source faces")
'''


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- matching (evalx.py logic)
def match(dets: list, gt: list, thr: float) -> tuple[list[bool], int]:
    """One image, the rule of shared/reference/evalx.py. dets: [x1, y1, x2, y2, score];
    returns (matched flag per non-ignore GT, in label order; number of false boxes)."""
    D = sorted([list(d) for d in dets], key=lambda d: -d[4])
    G = [g for g in gt if not g.get("ignore")]
    I = [g for g in gt if g.get("ignore")]
    used = [False] * len(G)
    fp = 0
    for d in D:
        best, bv = -1, thr
        for j, g in enumerate(G):
            if used[j]:
                continue
            v = cd.iou(d, g["box"])
            if v >= bv:
                bv, best = v, j
        if best >= 0:
            used[best] = True
            continue
        if any(cd.iou(d, g["box"]) >= thr or cd.inside(d, g["box"]) for g in I):
            continue
        fp += 1  # duplicates on an already matched GT are FP too (as in COCO)
    return used, fp


def score(dets: dict, labels: dict, names: list[str], thr: float) -> dict:
    """dets: {name: [[x1, y1, x2, y2, score], ...]}; names: the images to score (label keys)."""
    R = {"easy": 0, "easy_tp": 0, "hard": 0, "hard_tp": 0, "fp": 0, "images": len(names),
         "matched": {}, "per_image": {}}
    for n in names:
        gt = labels.get(n, [])
        used, fp = match(dets.get(n, []), gt, thr)
        G = [g for g in gt if not g.get("ignore")]
        missed = []
        for g, u in zip(G, used):
            k = "hard" if g.get("hard") else "easy"
            R[k] += 1
            R[k + "_tp"] += u
            if not u:
                missed.append(("H" if g.get("hard") else "E") + str(g["box"]))
        R["fp"] += fp
        R["matched"][n] = used
        R["per_image"][n] = {"tp": sum(used), "gt": len(G), "fp": fp, "missed": missed}
    return R


# ---------------------------------------------------------------- running veil
# `--face-model` of this run, passed to every veil run (set in main).
FACE_ARGS: list[str] = []


def run_veil(veil: Path, src: Path, out: Path, extra: list[str], jobs: int, log_path: Path) -> dict:
    cmd = [str(veil), "redact", str(src), str(out), "--quiet", *extra, *FACE_ARGS, "--jobs", str(jobs),
           "--device", "cpu"]
    t0 = time.perf_counter()
    with open(log_path, "wb") as lf:
        rc = subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    recs = []
    prov = out / "provenance.jsonl"
    if prov.exists():
        recs = [json.loads(l) for l in prov.read_text().splitlines() if l.strip()]
    failed = [r["path"] for r in recs if r.get("status") == "failed"]
    if rc != 0 or failed:
        log(f"[veil] {' '.join(extra)}: exit {rc}, failed {failed}\n"
            f"{log_path.read_text(errors='replace')[-800:]}")
    return {"cmd": ["veil", "redact", "IN", "OUT", "--quiet", *extra, "--jobs", str(jobs), "--device", "cpu"],
            "rc": rc, "wall_s": round(wall, 2), "records": recs, "failed": failed}


def dets_by(recs: list[dict], folder: str | None, keep) -> dict:
    """{file name: [[x1, y1, x2, y2, score], ...]} for records under folder/ (None: any), keeping the
    detections for which keep(detection) is true."""
    out = {}
    for r in recs:
        p = Path(r["path"])
        if folder is not None and (len(p.parts) < 2 or p.parts[0] != folder):
            continue
        out[p.name] = [[d["box"]["x1"], d["box"]["y1"], d["box"]["x2"], d["box"]["y2"], d["score"]]
                       for d in r.get("detections", []) if keep(d)]
    return out


def is_face(d):
    return d.get("class") == "face"


def is_cf(d):
    return d.get("class") == "face" and d.get("model") != "head-fallback"


def is_hf(d):
    return d.get("class") == "face" and d.get("model") == "head-fallback"


def is_person(d):
    return d.get("class") == "person"


def list_images(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


# ---------------------------------------------------------------- part 1
def part_labelled(veil: Path, shared: Path, work: Path, jobs: int, person_model: str) -> dict:
    inp = work / "labelled-in"
    names = {}
    for f in FOLDERS:
        src = shared / "images" / f
        names[f] = list_images(src)
        (inp / f).mkdir(parents=True, exist_ok=True)
        for n in names[f]:
            shutil.copy2(src / n, inp / f / n)
    face_labels = json.loads((shared / "labels" / "faces.json").read_text())
    person_labels = json.loads((shared / "labels" / "persons.json").read_text())
    face_imgs = [n for n in names["faces"] if n in face_labels]
    person_imgs = [n for n in names["faces"] + names["persons"] if n in person_labels]
    unl = sorted(set(names["faces"]) - set(face_labels)) + \
        sorted(set(names["faces"] + names["persons"]) - set(person_labels))
    if unl:
        log(f"note: images without labels (not scored): {unl}")

    rows, neg_rows, runs = [], [], {}
    for key, desc, extra in CONFIGS:
        out = work / f"labelled-out-{key}"
        log(f"[labelled] {desc} ...")
        if key != "faces":
            extra = extra + ["--person-model", person_model]
        r = run_veil(veil, inp, out, extra, jobs, work / f"labelled-{key}.log")
        recs = r.pop("records")
        runs[key] = {**r, "images": len(recs)}
        log(f"[labelled] {desc}: {r['wall_s']} s, {len(recs)} records, rc {r['rc']}")

        def face_persons(folder, keep):
            d = {}
            for fo in ([folder] if isinstance(folder, str) else folder):
                d.update(dets_by(recs, fo, keep))
            return d

        if key in ("faces", "fused"):
            cf = score(face_persons("faces", is_cf), face_labels, face_imgs, FACE_IOU)
            row = {"config": key, "class": "face", "boxes": "centerface", **summ(cf)}
            if key == "fused":
                both = score(face_persons("faces", is_face), face_labels, face_imgs, FACE_IOU)
                hf_only = []
                for n in face_imgs:
                    G = [g for g in face_labels[n] if not g.get("ignore")]
                    for g, a, b in zip(G, cf["matched"][n], both["matched"][n]):
                        if b and not a:
                            hf_only.append({"image": n, "box": g["box"], "hard": g.get("hard", False)})
                hf_boxes = sum(len(v) for v in face_persons("faces", is_hf).values())
                rows.append({**row, "config": "fused", "boxes": "centerface only"})
                row = {"config": key, "class": "face", "boxes": "centerface + head-fallback", **summ(both),
                       "head_fallback_boxes": hf_boxes, "head_fallback_only": len(hf_only),
                       "head_fallback_only_faces": hf_only}
            rows.append(row)
        if key in ("persons", "fused"):
            pr = score(face_persons(["faces", "persons"], is_person), person_labels, person_imgs, PERSON_IOU)
            rows.append({"config": key, "class": "person", "boxes": person_model, **summ(pr)})
        neg = {n: [] for n in names["negatives"]}
        cnt = {"centerface": 0, "head-fallback": 0, "person": 0}
        per = {}
        for rec in recs:
            p = Path(rec["path"])
            if p.parts[0] != "negatives":
                continue
            for d in rec.get("detections", []):
                k = "person" if is_person(d) else ("head-fallback" if is_hf(d) else "centerface")
                cnt[k] += 1
                per.setdefault(p.name, []).append(
                    {"model": d.get("model"), "class": d.get("class"), "score": round(d["score"], 3)})
        neg_rows.append({"config": key, "images": len(neg), "face_fp": cnt["centerface"],
                         "head_fallback_fp": cnt["head-fallback"], "person_fp": cnt["person"],
                         "per_image": per})
    return {"images": {k: len(v) for k, v in names.items()}, "runs": runs, "rows": rows,
            "negatives": neg_rows}


def summ(R: dict) -> dict:
    return {"images": R["images"], "easy_recall": f"{R['easy_tp']}/{R['easy']}",
            "hard_recall": f"{R['hard_tp']}/{R['hard']}",
            "easy_recall_frac": round(R["easy_tp"] / max(1, R["easy"]), 4),
            "hard_recall_frac": round(R["hard_tp"] / max(1, R["hard"]), 4),
            "fp": R["fp"], "fp_per_image": round(R["fp"] / max(1, R["images"]), 2),
            "per_image": R["per_image"]}


# ---------------------------------------------------------------- part 2
def pillow_python() -> Path:
    py = cd.venv_dir() / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import PIL"], capture_output=True).returncode == 0:
        return py
    return cd.ensure_venv() / "bin" / "python"  # compare_deface's venv (has Pillow)


def part_stress(veil: Path, shared: Path, work: Path, jobs: int) -> dict:
    sdir = work / "stress"
    if sdir.exists():
        shutil.rmtree(sdir)
    sdir.mkdir(parents=True)
    cfg = {"seed": SEED, "sizes": STRESS_SIZES, "canvas": [1280, 960], "grid": [10, 8], "margin": 1.6,
           "bg_blur": 12}
    helper = work / "make_stress.py"
    helper.write_text(STRESS_HELPER)
    py = pillow_python()
    t0 = time.perf_counter()
    subprocess.run([str(py), str(helper), str(shared / "images" / "faces"),
                    str(shared / "labels" / "faces.json"), str(shared / "images" / "negatives"),
                    str(sdir), json.dumps(cfg)], check=True)
    gen_s = round(time.perf_counter() - t0, 2)
    labels = json.loads((sdir / "labels.json").read_text())
    manifest = json.loads((sdir / "manifest.json").read_text())
    pv = subprocess.run([str(py), "-c", "import PIL; print(PIL.__version__)"], capture_output=True, text=True)
    log(f"[stress] generated {len(labels)} canvases in {gen_s} s ({sdir / 'images'})")

    rows, runs = [], {}
    for key, desc, extra in STRESS_CONFIGS:
        out = work / f"stress-out-{key}"
        log(f"[stress] {desc} ...")
        r = run_veil(veil, sdir / "images", out, extra, jobs, work / f"stress-{key}.log")
        recs = r.pop("records")
        runs[key] = {**r, "images": len(recs)}
        log(f"[stress] {desc}: {r['wall_s']} s, {len(recs)} records, rc {r['rc']}")
        dets = dets_by(recs, None, is_face)
        for size in STRESS_SIZES:
            row = {"config": key, "size": size, "gt": 0, "tp": 0, "fp": 0, "fp_near_face": 0,
                   "fp_background": 0, "by_background": {}, "missed": []}
            for c in manifest["canvases"]:
                if c["size"] != size:
                    continue
                n = c["file"]
                gt = labels[n]
                used, fp = match(dets.get(n, []), gt, FACE_IOU)
                # Split the false boxes: centre inside a pasted crop vs on the background.
                near = unmatched_near(dets.get(n, []), gt, used)
                row["gt"] += len(gt)
                row["tp"] += sum(used)
                row["fp"] += fp
                row["fp_near_face"] += near
                row["fp_background"] += fp - near
                row["by_background"][c["background"]] = {"tp": sum(used), "gt": len(gt), "fp": fp}
                row["missed"] += [g["src"] for g, u in zip(gt, used) if not u]
            row["recall"] = f"{row['tp']}/{row['gt']}"
            for bg, v in row["by_background"].items():
                row[f"recall_{bg}"] = f"{v['tp']}/{v['gt']}"
            row["recall_frac"] = round(row["tp"] / max(1, row["gt"]), 4)
            rows.append(row)
    return {"generator": {**cfg, "pillow": pv.stdout.strip(), "python": str(py), "seconds": gen_s,
                          "canvases": manifest["canvases"], "source_faces": manifest["source_faces"]},
            "runs": runs, "rows": rows}


def unmatched_near(dets: list, gt: list, used: list[bool]) -> int:
    """Recounts which detections were false boxes (same greedy pass as match()) and returns how many
    of them have their centre inside a pasted crop (duplicates / misplaced boxes on a face patch)."""
    D = sorted([list(d) for d in dets], key=lambda d: -d[4])
    u = [False] * len(gt)
    near = 0
    for d in D:
        best, bv = -1, FACE_IOU
        for j, g in enumerate(gt):
            if u[j]:
                continue
            v = cd.iou(d, g["box"])
            if v >= bv:
                bv, best = v, j
        if best >= 0:
            u[best] = True
            continue
        if any(cd.inside(d, g["paste"]) for g in gt):
            near += 1
    assert u == used
    return near


# ---------------------------------------------------------------- report
def table(cols: list[tuple[str, str]], rows: list[dict]) -> str:
    def cell(v):
        return "-" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))
    w = [max(len(h), *(len(cell(r.get(k))) for r in rows)) for k, h in cols]
    lines = ["| " + " | ".join(h.ljust(x) for (_, h), x in zip(cols, w)) + " |",
             "| " + " | ".join("-" * x for x in w) + " |"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(k)).ljust(x) for (k, _), x in zip(cols, w)) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--veil", default=str(ROOT / "target" / "release" / "veil"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--person-model", default="nanodet-g", help="person model (nanodet-g, yolox-nano)")
    ap.add_argument("--face-model", default="centerface", help="face model (centerface, centerface-int8)")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    ap.add_argument("--skip-stress", action="store_true", help="labelled photos only")
    ap.add_argument("--skip-labelled", action="store_true", help="stress set only")
    ap.add_argument("--work", default=None, help="work folder (inputs, veil outputs, logs, stress set); kept")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    a = ap.parse_args()

    veil = Path(a.veil).resolve()
    shared = Path(a.shared).resolve()
    if not os.access(veil, os.X_OK):
        log(f"veil binary not found at {veil} (build it or pass --veil)")
        return 2
    if not (shared / "labels" / "faces.json").is_file():
        log(f"shared data not found at {shared} (pass --shared)")
        return 2
    if a.work:
        work = Path(a.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        for p in work.glob("*-out-*"):  # stale veil outputs from an earlier run
            shutil.rmtree(p)
        shutil.rmtree(work / "labelled-in", ignore_errors=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="veil-quality-"))
    global FACE_ARGS
    FACE_ARGS = ["--face-model", a.face_model]
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    res = {}
    try:
        if not a.skip_labelled:
            res["labelled"] = part_labelled(veil, shared, work, a.jobs, a.person_model)
        if not a.skip_stress:
            res["stress"] = part_stress(veil, shared, work, a.jobs)
    finally:
        if a.work or a.keep_work:
            log(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    total = round(time.perf_counter() - t0, 1)

    p = subprocess.run([str(veil), "--version"], capture_output=True, text=True)
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "veil": str(veil),
            "veil_version": (p.stdout or p.stderr).strip() or None, "jobs": a.jobs, "shared": str(shared),
            "face_model": a.face_model,
            "face_iou": FACE_IOU, "person_iou": PERSON_IOU, "seconds": total,
            "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "loadavg_at_start": load0,
                     "loadavg_at_end": os.getloadavg()},
            "matching": "shared/reference/evalx.py: greedy by score, one detection per GT, detections on "
                        "ignore boxes (IoU >= thr or centre inside) neither TP nor FP, duplicates FP"}

    print(f"\nveil quality -- {meta['veil_version']}, --face-model {a.face_model}, --jobs {a.jobs}, IoU faces {FACE_IOU} / persons "
          f"{PERSON_IOU}; {total} s\n")
    if "labelled" in res:
        L = res["labelled"]
        print(f"Labelled photos (faces scored on images/faces ({L['images']['faces']}), persons on "
              f"images/faces + images/persons ({L['images']['faces'] + L['images']['persons']})):\n")
        print(table([("config", "config"), ("class", "class"), ("boxes", "boxes scored"), ("images", "images"),
                     ("easy_recall", "easy"), ("hard_recall", "hard"), ("fp", "false boxes"),
                     ("fp_per_image", "per image"), ("head_fallback_only", "found only by head fallback")],
                    L["rows"]))
        print(f"\nNegatives ({L['images']['negatives']} images, no people): false boxes\n")
        print(table([("config", "config"), ("face_fp", "face (centerface)"),
                     ("head_fallback_fp", "face (head fallback)"), ("person_fp", "person")], L["negatives"]))
        print("\nveil runs: " + ", ".join(f"{k} {v['wall_s']} s (rc {v['rc']}, {v['images']} images"
                                          f"{', FAILED ' + str(v['failed']) if v['failed'] else ''})"
                                          for k, v in L["runs"].items()))
    if "stress" in res:
        S = res["stress"]
        g = S["generator"]
        print(f"\nSmall-face stress set ({len(g['canvases'])} canvases {g['canvas'][0]}x{g['canvas'][1]}, "
              f"{g['source_faces']} source faces x 2 backgrounds per size, seed {g['seed']}; IoU {FACE_IOU}):\n")
        print(table([("config", "config"), ("size", "face px"), ("recall", "recall"),
                     ("recall_noise", "on grey noise"), ("recall_photo", "on blurred photo"),
                     ("fp", "false boxes"), ("fp_near_face", "on a face patch"),
                     ("fp_background", "on background")], S["rows"]))
        print("\nveil runs: " + ", ".join(f"{k} {v['wall_s']} s (rc {v['rc']})" for k, v in S["runs"].items()))

    out_dir = Path(a.results_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"quality-{dt.datetime.now():%Y-%m-%dT%H%M%S}.json"
    out.write_text(json.dumps({"meta": meta, **res}, indent=1) + "\n")
    print(f"\nwritten {out}")
    runs = [v for part in res.values() for v in part["runs"].values()]
    return 0 if all(v["rc"] == 0 and not v["failed"] for v in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
