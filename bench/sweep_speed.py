"""Sweep speed: the serial engine (one rate point at a time) against the fast engine, and our
one-image coder against CompressAI's own compress/decompress. Not a test: a measurement.

    .venv/bin/python bench/sweep_speed.py [--archs balle,minnen] [--images 4] [--quick] [--out r.json]

Models: every architecture at CompressAI's default widths (registry defaults), random weights.
Points: the 8 levels and the 27 paper factors (qvrf.PAPER_FACTORS), 35 in all.

Honesty about the baseline: the serial path costs one full encode and decode per point, so it is
*measured* on ``--serial-points`` points of each image spread over the 35 (levels and factors
alike) and *extrapolated* to all 35 at its measured mean per point; the table says how many were
measured. The fast engine is always run on every point. The two engines alternate image by image
(the machine may be shared: ratios from one run are comparable, absolute seconds less so). Every
serially measured point is compared with the fast engine's result: bytes, decoded image, decode
check.

CompressAI check: one image at one rate, CompressAI's zoo model (``pretrained=False``) against our
kind=fixed model holding the same random weights, timed as compressai.utils.eval_model does
(centred padding, compress, decompress, crop), the two alternating, median of ``--reps``. Its
CompressAI time is also the per-point cost of the official QVRF Inference.py loop (CompressAI's
compress/decompress, whole model, once per rate point), the "CompressAI loop" column of the sweep
table. For minnen and cheng2020 our format-2 string holds the symbols in wavefront order; the
check compares the raster-order string (untimed) with CompressAI's.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qvrf_bench import images  # noqa: E402
from qvrf_bench.methods import codec  # noqa: E402
from qvrf_bench.methods.engine import MethodEngine  # noqa: E402
from qvrf_bench.methods.qvrf import QVRFMethod  # noqa: E402
from qvrf_bench.models import ARCHS, LAMBDAS_8, PAPER_FACTORS, create, prepare_for_coding  # noqa: E402
from qvrf_bench.models.registry import AUTOREGRESSIVE  # noqa: E402

AR = AUTOREGRESSIVE
# arch -> (CompressAI zoo builder, quality whose widths equal our default QVRF widths)
ZOO = {"balle": ("bmshj2018_hyperprior", 8), "minnen-mean": ("mbt2018_mean", 8), "minnen": ("mbt2018", 8),
       "cheng2020": ("cheng2020_attn", 6)}  # fmt: skip


def all_points(method: QVRFMethod) -> list:
    return method.rate_points() + [method.continuous_point(f) for f in PAPER_FACTORS]


def spread(n: int, k: int) -> list[int]:
    """k indexes spread evenly over range(n), ends included."""
    if k >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / max(k - 1, 1)) for i in range(k)})


def centre_crop(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    y0, x0 = max(0, (rgb.shape[0] - h) // 2), max(0, (rgb.shape[1] - w) // 2)
    return np.ascontiguousarray(rgb[y0 : y0 + h, x0 : x0 + w])


def load_images(folder: Path, n: int, crop: tuple[int, int] | None) -> list[tuple[str, np.ndarray]]:
    paths = images.list_images(folder)[:n]
    out = []
    for p in paths:
        rgb = images.load_image(p).rgb
        out.append((p.name, centre_crop(rgb, *crop) if crop else rgb))
    return out


def sweep(arch: str, imgs, pick: list[int], serial_k: int, max_batch: int, log) -> dict:
    torch.manual_seed(0)
    model = prepare_for_coding(create(arch, "qvrf"))
    method = QVRFMethod(model, container=2)  # what `sweep -c` measures
    fp = method.fingerprint()
    points = [all_points(method)[i] for i in pick]
    serial, fast = MethodEngine("serial"), MethodEngine("fast", max_batch=max_batch)
    t0 = time.perf_counter()
    serial.warm_up(method, fp)
    fast.warm_up(method, fp)  # includes the fast-vs-serial probe check
    log(f"  {arch}: warm-up and self-check {time.perf_counter() - t0:.1f} s")
    sel = spread(len(points), serial_k)
    rows = []
    for n_img, (name, rgb) in enumerate(imgs):
        order = ("fast", "serial") if n_img % 2 == 0 else ("serial", "fast")
        res = {}
        for which in order:
            t0 = time.perf_counter()
            if which == "fast":
                res["fast"] = fast.run_image(method, rgb, points, fp)
            else:
                res["serial"] = serial.run_image(method, rgb, [points[i] for i in sel], fp)
            res[which + "_s"] = time.perf_counter() - t0
        matches = [
            f.data == s.data and np.array_equal(f.rgb, s.rgb) and f.decode_ok == s.decode_ok
            for f, s in zip([res["fast"][i] for i in sel], res["serial"], strict=True)
        ]
        row = {
            "image": name, "size": list(rgb.shape[:2]), "points": len(points), "serial_points": len(sel),
            "fast_s": res["fast_s"], "serial_measured_s": res["serial_s"],
            "serial_per_point_s": res["serial_s"] / len(sel), "fast_per_point_s": res["fast_s"] / len(points),
            "matched": sum(matches), "all_decode_ok": all(r.decode_ok for r in res["fast"]),
            "fast_enc_s": sum(r.enc_s for r in res["fast"]), "fast_dec_s": sum(r.dec_s for r in res["fast"]),
        }  # fmt: skip
        log(f"  {arch} {name}: fast {row['fast_per_point_s']:.3f} s/pt, serial {row['serial_per_point_s']:.3f} s/pt "
            f"({len(sel)} pts), matched {row['matched']}/{len(sel)}")  # fmt: skip
        rows.append(row)
    serial_pp = sum(r["serial_measured_s"] for r in rows) / sum(r["serial_points"] for r in rows)
    fast_pp = sum(r["fast_s"] for r in rows) / sum(r["points"] for r in rows)
    return {
        "arch": arch, "N": model.config.N, "M": model.config.M, "images": rows,
        "serial_per_point_s": serial_pp, "fast_per_point_s": fast_pp, "ratio": serial_pp / fast_pp,
        "serial_extrapolated": any(r["serial_points"] < r["points"] for r in rows),
        "matched": sum(r["matched"] for r in rows), "compared": sum(r["serial_points"] for r in rows),
    }  # fmt: skip


def compressai_check(arch: str, rgb: np.ndarray, reps: int, log) -> dict:
    """Our one-image coder vs CompressAI's compress/decompress, same weights, same image."""
    import compressai.zoo as zoo

    name, quality = ZOO[arch]
    torch.manual_seed(0)
    ref = getattr(zoo, name)(quality=quality, pretrained=False).eval()
    ref.update(force=True)
    ours = create(arch, "fixed", lmbda=LAMBDAS_8[quality - 1])
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=False)
    assert missing == ["gain"] and not unexpected, (missing, unexpected)
    prepare_for_coding(ours)
    fp = codec.model_fingerprint(ours)
    x = images.rgb8_to_tensor(rgb)
    padding = images.centred_padding(*x.shape[-2:])
    xp = images.pad(x, padding)

    def run_compressai():
        with torch.no_grad():
            enc = ref.compress(xp)
            dec = ref.decompress(enc["strings"], enc["shape"])
        images.crop(dec["x_hat"], padding)
        return enc["strings"]

    def run_ours():
        enc = codec.encode_tensor(ours, x, level=0, fingerprint=fp)
        codec.decode_full(ours, enc.data, fingerprint=fp)
        strings = codec.unpack(enc.data)[1]
        if arch in AR:  # format 2 stores the symbols in wavefront order; raster order is CompressAI's string
            with torch.no_grad():
                strings[0] = ours.compress(xp, torch.tensor(1.0), order="raster")["strings"][0][0]
        return strings

    times = {"compressai": [], "ours": []}
    same = True
    for rep in range(reps + 1):  # the first round warms up and is not timed
        for which in ("compressai", "ours") if rep % 2 == 0 else ("ours", "compressai"):
            t0 = time.perf_counter()
            out = run_compressai() if which == "compressai" else run_ours()
            dt = time.perf_counter() - t0
            if which == "ours" and arch in AR:  # the raster-order string above is not part of the time
                t1 = time.perf_counter()
                with torch.no_grad():
                    ours.compress(xp, torch.tensor(1.0), order="raster")
                dt -= time.perf_counter() - t1
            if rep:
                times[which].append(dt)
            if which == "compressai":
                want = [out[0][0], out[1][0]]
            else:
                got = out
        same = same and got == want
    c, o = statistics.median(times["compressai"]), statistics.median(times["ours"])
    log(f"  {arch}: CompressAI {name} q{quality} {c:.2f} s, ours {o:.2f} s, ratio {o / c:.2f}, same bytes {same}")
    return {"arch": arch, "zoo": f"{name} q{quality}", "compressai_s": c, "ours_s": o, "ratio": o / c,
            "same_bytes": same, "reps": reps, "size": list(rgb.shape[:2])}  # fmt: skip


def table(results: dict) -> str:
    lines = [
        "| arch | N/M | images | points | serial s/point | fast s/point | fast vs serial | CompressAI loop s/point "
        "| fast vs CompressAI loop | bitstreams + images matched |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cai = {c["arch"]: c for c in results.get("compressai", [])}
    for r in results["sweep"]:
        measured = r["compared"]
        total = sum(i["points"] for i in r["images"])
        basis = f"serial measured on {measured} of {total} points, extrapolated" if r["serial_extrapolated"] else "all"
        c = cai.get(r["arch"])
        loop = f"{c['compressai_s']:.2f} | **{c['compressai_s'] / r['fast_per_point_s']:.1f}x**" if c else "- | -"
        lines.append(
            f"| {r['arch']} | {r['N']}/{r['M']} | {len(r['images'])} | {r['images'][0]['points']} "
            f"| {r['serial_per_point_s']:.2f} ({basis}) | {r['fast_per_point_s']:.2f} | **{r['ratio']:.1f}x** "
            f"| {loop} | {r['matched']}/{r['compared']} |"
        )
    if results.get("compressai"):
        lines += ["", "| arch | CompressAI model | CompressAI enc+dec s | ours enc+dec s | ours/CompressAI "
                  "| same symbols (raster string = CompressAI's) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for c in results["compressai"]:
            lines.append(f"| {c['arch']} | {c['zoo']} | {c['compressai_s']:.2f} | {c['ours_s']:.2f} "
                         f"| **{c['ratio']:.2f}** | {c['same_bytes']} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma-separated (default: all four)")
    default_ds = REPO.parent / "shared" / "data" / "kodak"
    ap.add_argument("--dataset", type=Path, default=default_ds, help=f"image folder (default {default_ds})")
    ap.add_argument("--images", type=int, default=4, help="first N images, hyperprior models (default 4)")
    ap.add_argument("--ar-images", type=int, default=1,
                    help="first N images for minnen and cheng2020 (default 1: ~35 g_s runs an image)")  # fmt: skip
    ap.add_argument("--serial-points", type=int, default=5, help="serially measured points per image (default 5)")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of the CompressAI check (default 3)")
    ap.add_argument("--no-compressai", action="store_true", help="skip the CompressAI comparison")
    ap.add_argument("--no-sweep", action="store_true", help="only the CompressAI comparison")
    ap.add_argument("--quick", action="store_true",
                    help="256x384 centre crops, 1 image, 4 levels + 9 factors, 3 serial points")  # fmt: skip
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, flush=True)

    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    for a in archs:
        if a not in ARCHS:
            ap.error(f"unknown architecture {a!r}; choose from {', '.join(ARCHS)}")
    if not args.dataset.is_dir() or not images.list_images(args.dataset):
        print(f"error: no images in {args.dataset} (give --dataset FOLDER; Kodak is expected at {default_ds})",
              file=sys.stderr)  # fmt: skip
        return 2
    torch.set_num_threads(args.threads)
    crop = (256, 384) if args.quick else None
    pick = list(range(8 + len(PAPER_FACTORS)))  # indexes into all_points: 8 levels, then the factors
    if args.quick:
        pick = [0, 3, 5, 7] + [8 + i for i in range(0, 27, 3)]
        args.images, args.ar_images, args.serial_points = 1, 1, min(args.serial_points, 3)
    results = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "threads": args.threads,
                    "torch": torch.__version__, "device": "cpu"},
        "sweep": [], "compressai": [],
    }  # fmt: skip
    for arch in archs:
        imgs = load_images(args.dataset, args.ar_images if arch in AR else args.images, crop)
        if not args.no_sweep:
            log(f"{arch}: {len(imgs)} image(s) x {len(pick)} points, serial measured on {args.serial_points} per image")
            results["sweep"].append(sweep(arch, imgs, pick, args.serial_points, args.max_batch, log))
        if not args.no_compressai:
            results["compressai"].append(compressai_check(arch, imgs[0][1], args.reps, log))
        if args.out:
            args.out.write_text(json.dumps(results, indent=1))
    print()
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
