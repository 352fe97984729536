"""Co-location benchmarks: preparation throughput (1 and 2 Dask workers) and reprojection.

    python -P benchmarks/colocate.py [--data ../shared/data] [--repeats 5]

1. Reprojection of a real SEVIRI HRIT segment (411 × 3712 geostationary cells, 3 km) onto a
   4 km LAEA grid over Europe (400 × 500): qpebench's ``Regridder`` (area mean; weights built
   once, then applied per scan) against pyresample's ``BucketResampler.get_average`` (the same
   operation: mean of the source cells whose centres fall in each target cell) and
   ``kd_tree.resample_nearest``, on the same grids, in the same run; medians of ``repeats``.
2. Preparation throughput: the 12 real Satip RSS frames + 48 generated ODIM radar files (4 km
   OPERA grid, 4 per 5-min slot) onto a 192 × 192 LAEA 4 km grid → samples of 4 frames × 7 bands
   × 32², with 1 process and with a local Dask cluster of 2 workers; samples/s of the whole
   ``build_colocated_store`` call (cluster start-up included, which is what a user waits for).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from pyproj import CRS, Transformer

from qpebench.datasets.colocate import ColocationConfig, build_colocated_store
from qpebench.datasets.grid import Grid
from qpebench.datasets.regrid import Regridder, laea_grid
from qpebench.datasets.satellite import read_satellite
from qpebench.registry import load_builtins

REPO = Path(__file__).resolve().parents[1]


def _median_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reprojection(data: Path, repeats: int) -> None:
    from pyresample import kd_tree
    from pyresample.bucket import BucketResampler
    from pyresample.geometry import AreaDefinition, SwathDefinition

    scan = read_satellite(sorted((data / "seviri_hrit").glob("H-*")), bands=["IR10.8"])
    src = Grid.of(scan)
    values = np.asarray(scan.values[0], np.float64)
    tgt = laea_grid(50.0, 10.0, 4000.0, (400, 500))
    xe, ye = tgt.edges()
    area = AreaDefinition(
        "laea", "laea", "laea", tgt.crs.to_dict(), 500, 400, (xe[0], ye[-1], xe[-1], ye[0])
    )
    xx, yy = np.meshgrid(src.x, src.y)
    lon, lat = Transformer.from_crs(src.crs, CRS.from_epsg(4326), always_xy=True).transform(xx, yy)
    ok = np.isfinite(lon) & (np.abs(lon) < 1e30)
    lon, lat = np.where(ok, lon, np.nan), np.where(ok, lat, np.nan)

    def ours_build_and_apply() -> None:
        Regridder(src, tgt, min_coverage=1e-6, supersample=1).apply(values)

    regridder = Regridder(src, tgt, min_coverage=1e-6, supersample=1)
    ours_build = _median_time(ours_build_and_apply, repeats)
    ours_apply = _median_time(lambda: regridder.apply(values), repeats)

    def bucket() -> None:
        import dask.array as da

        resampler = BucketResampler(area, da.from_array(lon), da.from_array(lat))
        resampler.get_average(da.from_array(values)).compute()

    def nearest() -> None:
        swath = SwathDefinition(np.nan_to_num(lon, nan=999.0), np.nan_to_num(lat, nan=999.0))
        kd_tree.resample_nearest(swath, values, area, radius_of_influence=5000, fill_value=None)

    theirs_bucket = _median_time(bucket, repeats)
    theirs_nearest = _median_time(nearest, repeats)
    print(f"reprojection HRIT IR10.8 {src.shape} -> LAEA 4 km {tgt.shape}, median of {repeats}")
    print(f"  qpebench Regridder, weights + apply  {ours_build:8.3f} s")
    print(f"  qpebench Regridder, apply (reused)   {ours_apply:8.3f} s")
    print(
        f"  pyresample BucketResampler average   {theirs_bucket:8.3f} s   "
        f"ratio {theirs_bucket / ours_build:.2f} (build) / {theirs_bucket / ours_apply:.1f} (reuse)"
    )
    ratios = f"{theirs_nearest / ours_build:.2f} (build) / {theirs_nearest / ours_apply:.1f}"
    print(
        f"  pyresample kd_tree nearest           {theirs_nearest:8.3f} s   ratio {ratios} (reuse)"
    )


def throughput(data: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "odim_writer", REPO / "tests" / "datasets" / "conftest.py"
    )
    assert spec and spec.loader
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "radar").mkdir()
        rng = np.random.default_rng(0)
        radar = []
        for minute in range(0, 60, 5):  # 24 radar times at 5 min spacing … (12 used twice)
            for second in (0, 1, 2, 3):
                stamp = f"20231220{11 + (30 + minute) // 60:02d}{(30 + minute) % 60:02d}0{second}"
                raw = (rng.gamma(0.4, 300.0, size=(700, 450))).astype(np.uint16)
                path = writer.write_odim_file(
                    root / "radar" / f"r{stamp}.h5",
                    raw,
                    cell=4000.0,
                    what={"gain": 0.01, "offset": 0.0, "nodata": 65535.0, "undetect": 0.0},
                )
                import h5py

                with h5py.File(path, "r+") as h5:
                    h5["what"].attrs["date"] = np.bytes_(stamp[:8])
                    h5["what"].attrs["time"] = np.bytes_(stamp[8:])
                radar.append(path)
        satellite = sorted((data / "seviri_rss_satip").glob("*.zarr.zip"))
        grid = laea_grid(53.0, -1.5, 4000.0, (192, 192))
        config = ColocationConfig(
            region="uk",
            frames=4,
            step_minutes=5.0,
            tolerance_minutes=1.0,
            patch_size=32,
            min_valid_fraction=0.5,
            radar_chunk=4,
        )
        rates = {}
        for workers in (1, 2):
            start = time.perf_counter()
            store, _ = build_colocated_store(
                root / f"store{workers}",
                satellite=satellite,
                radar=radar,
                grid=grid,
                config=config,
                workers=workers,
            )
            seconds = time.perf_counter() - start
            rates[workers] = len(store) / seconds
            print(
                f"preparation, {workers} worker(s): {len(store)} samples in {seconds:.1f} s = "
                f"{rates[workers]:.1f} samples/s (version {store.dataset_version})"
            )
        print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}")
        from distributed import Client, LocalCluster

        start = time.perf_counter()
        for _ in range(2):  # _run starts one cluster per phase
            cluster = LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            )
            Client(cluster).close()
            cluster.close()
        startup = time.perf_counter() - start
        print(f"  of which Dask start-up and shutdown of two local clusters: {startup:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    load_builtins()
    reprojection(args.data, args.repeats)
    throughput(args.data)


if __name__ == "__main__":
    main()
