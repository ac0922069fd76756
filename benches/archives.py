#!/usr/bin/env python3
"""Dataset archives: speed of the same photos as a folder and as WebDataset shards, and peak memory
of a 200 MB shard against a 2 GB one (stdlib only; needs a built veil and its models).

    python3 benches/archives.py [--veil target/release/veil] [--copies 8] [--jobs 2]

Part 1: the shared face photos (or veil's sample photos without ../shared), `--copies` times, as a
folder of loose files, as 4 WebDataset tar shards (`NNNNNN.jpg` + `.json` + `.txt`) and (with
pyarrow) as 4 Hugging Face style Parquet tables; one `veil redact --fresh -q` each; wall time and
images per second (image records only).
Part 2: a shard of 20 photos plus 10 MB binary sidecars filling it to 200 MB, then to 2 GB; peak
resident memory of `veil redact` (GNU time's maximum RSS).
Part 3 (with a Python that has pyarrow: .venv-test, made by scripts/test.sh): a Hugging Face style
Parquet table, the 20 photos in its first row group and 10 MB row groups of another binary column
filling it to 200 MB, then to 2 GB; peak resident memory.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def photos(veil: str, work: Path) -> list[Path]:
    shared = ROOT.parent / "shared" / "images" / "faces"
    if shared.is_dir():
        return sorted(p for p in shared.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    d = work / "sample"
    subprocess.run([veil, "sample", str(d)], check=True, capture_output=True)
    return sorted(d.iterdir())


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def run(veil: str, inp: Path, out: Path, jobs: int) -> tuple[float, int, int]:
    """(wall seconds, image records, peak RSS in KB)."""
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", veil, "redact", str(inp), str(out), "--fresh", "-q",
                        "--jobs", str(jobs), "--device", "cpu"], capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode not in (0, 1):
        sys.exit(p.stderr)
    rss = int(p.stderr.strip().splitlines()[-1])
    recs = [json.loads(l) for l in open(out / "provenance.jsonl")]
    images = sum(1 for r in recs if r.get("format") not in ("tar", "tar.gz", "tar.zst", "zip", "parquet"))
    return wall, images, rss


# A Hugging Face style table (image struct, text, id) of the photos given, row groups of 8 rows.
MAKE_HF = r"""
import sys, os, pyarrow as pa, pyarrow.parquet as pq
out, photos = sys.argv[1], sys.argv[2:]
img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
rows = [{"bytes": open(p, "rb").read(), "path": os.path.basename(p)} for p in photos]
t = pa.table({"image": pa.array(rows, img_t), "text": [f"a photo, {os.path.basename(p)}" for p in photos],
              "id": list(range(len(photos)))})
pq.write_table(t, out, row_group_size=8, compression="zstd")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--veil", default=str(ROOT / "target" / "release" / "veil"))
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = photos(a.veil, work)
        folder, shards = work / "folder", work / "shards"
        folder.mkdir()
        shards.mkdir()
        items = [(i, p) for i, p in enumerate(src * a.copies)]
        per = (len(items) + 3) // 4
        for k in range(4):
            with tarfile.open(shards / f"{k:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as t:
                for i, p in items[k * per:(k + 1) * per]:
                    key = f"{i:06d}"
                    data = p.read_bytes()
                    shutil.copy(p, folder / f"{key}{p.suffix.lower()}")
                    add(t, f"{key}{p.suffix.lower()}", data)
                    add(t, f"{key}.json", json.dumps({"key": key, "source": p.name}).encode())
                    add(t, f"{key}.txt", f"a photo, {p.name}".encode())
        py = ROOT / ".venv-test" / "bin" / "python"
        inputs = [("folder of files", folder), ("4 WebDataset shards", shards)]
        if py.exists():
            tables = work / "tables"
            tables.mkdir()
            for k in range(4):
                part = [str(p) for _, p in items[k * per:(k + 1) * per]]
                subprocess.run([str(py), "-c", MAKE_HF, str(tables / f"train-{k:05d}.parquet")] + part,
                               check=True)
            inputs.append(("4 Parquet tables", tables))
        print(f"Part 1: {len(items)} photos ({len(src)} x {a.copies}), --jobs {a.jobs}\n")
        print("| input | wall s | image records | images/s | peak RSS MB |")
        print("| --- | --- | --- | --- | --- |")
        rows = {}
        for name, inp in inputs:
            wall, n, rss = run(a.veil, inp, work / f"out-{name[:8]}", a.jobs)
            rows[name] = wall
            print(f"| {name} | {wall:.2f} | {n} | {n / wall:.2f} | {rss / 1024:.0f} |", flush=True)
        print()
        for name in rows:
            if name != "folder of files":
                over = rows[name] / rows["folder of files"] - 1
                print(f"{name} vs folder: {over * 100:+.1f} % wall time")
        print()

        print("Part 2: one shard of 20 photos + binary sidecars\n")
        print("| shard size | wall s | peak RSS MB |")
        print("| --- | --- | --- |")
        chunk = os.urandom(1 << 20)
        for total_mb in (200, 2000):
            d = work / f"big{total_mb}"
            d.mkdir()
            with tarfile.open(d / "000000.tar", "w", format=tarfile.USTAR_FORMAT) as t:
                for i, p in enumerate(src[:20]):
                    add(t, f"{i:06d}{p.suffix.lower()}", p.read_bytes())
                    add(t, f"{i:06d}.json", b"{}")
                # Sidecars of 10 MB each: only their number grows with the shard.
                for i in range(total_mb // 10):
                    info = tarfile.TarInfo(f"{i:06d}.features.bin")
                    info.size = 10 << 20
                    t.addfile(info, io.BufferedReader(io.BytesIO(chunk * 10)))
            size = (d / "000000.tar").stat().st_size
            wall, _, rss = run(a.veil, d, work / f"bigout{total_mb}", a.jobs)
            print(f"| {size / 1e6:.0f} MB | {wall:.1f} | {rss / 1024:.0f} |", flush=True)
            shutil.rmtree(d)
            shutil.rmtree(work / f"bigout{total_mb}")

        if not py.exists():
            print("\nPart 3 skipped: no .venv-test with pyarrow (run scripts/test.sh once)")
            return
        print("\nPart 3: one Parquet table, 20 photos + 10 MB row groups of features\n")
        print("| table size | wall s | peak RSS MB |")
        print("| --- | --- | --- |")
        make = r"""
import sys, os, pyarrow as pa, pyarrow.parquet as pq
out, total_mb, photos = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
img_t = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
schema = pa.schema([("image", img_t), ("features", pa.binary())])
blob = os.urandom(10 << 20)
with pq.ParquetWriter(out, schema, compression="zstd") as w:
    rows = [{"bytes": open(p, "rb").read(), "path": os.path.basename(p)} for p in photos]
    w.write_table(pa.table({"image": pa.array(rows, img_t), "features": pa.array([b""] * len(rows))}, schema=schema))
    for _ in range(total_mb // 10):
        w.write_table(pa.table({"image": pa.array([None], img_t), "features": pa.array([blob])}, schema=schema))
"""
        for total_mb in (200, 2000):
            d = work / f"table{total_mb}"
            d.mkdir()
            subprocess.run([str(py), "-c", make, str(d / "train.parquet"), str(total_mb)]
                           + [str(p) for p in src[:20]], check=True)
            size = (d / "train.parquet").stat().st_size
            wall, _, rss = run(a.veil, d, work / f"tableout{total_mb}", a.jobs)
            print(f"| {size / 1e6:.0f} MB | {wall:.1f} | {rss / 1024:.0f} |", flush=True)
            shutil.rmtree(d)
            shutil.rmtree(work / f"tableout{total_mb}")


if __name__ == "__main__":
    main()
