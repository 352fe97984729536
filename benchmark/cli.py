"""The ``qpebench`` command line (Hydra-composed configuration underneath).

Commands::

    qpebench run [KEY=VALUE ...]          the whole cross-region benchmark (default: synthetic)
    qpebench run --multirun KEY=A,B ...   a sweep, one job per combination, on Hydra's launchers
    qpebench prepare [--rebuild] [KEY=VALUE ...]   build (or resume) the sample store only
    qpebench models list [--json]         the model cards of every registered model
    qpebench leaderboard render PATH ...  Markdown leaderboard from result records
    qpebench leaderboard publish PATH ... render them into leaderboard/results (the only way
                                          a board is written there)
    qpebench report input-config PATH ... the input-configuration study of one split's records
    qpebench report ceiling PATH ...      the temporal gain's ceiling per region (one split each)
    qpebench store verify STORE           check every shard against the manifest checksums
    qpebench inspect PATH [--json]        what a radar file holds (a directory: scan every file)
    qpebench inspect --readers [--json]   the registered radar readers

Every failure prints one line, ``qpebench: error: ...``, and exits with status 2: a qpebench
error as its message, anything else (an ``OSError``, ``MemoryError`` or ``KeyError`` escaping a
reader, loader or renderer, or a bug) as its type and message with a pointer to ``--debug`` (or
``QPEBENCH_DEBUG=1``), which shows the traceback instead. Text that came from a file is printed
without control characters, so no escape sequence reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qpebench import __version__
from qpebench.config import compose_config, run_config
from qpebench.errors import ConfigError, QpebenchError, describe, one_line
from qpebench.names import check_name, check_writable, printable
from qpebench.records import RecordError, load_record
from qpebench.registry import MODELS, load_builtins
from qpebench.store import SampleStore

NAME_HELP = (
    "the files' name without extension, e.g. synthetic_transfer for a board of two splits "
    "(default: the split name, or leaderboard for several splits)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qpebench",
        description="Cross-region benchmark of IR satellite rain-rate retrievals.",
    )
    parser.add_argument("--version", action="version", version=f"qpebench {__version__}")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("QPEBENCH_DEBUG") == "1",
        help="show the traceback of an error (also QPEBENCH_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole benchmark (Hydra overrides KEY=VALUE)")
    run.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="a sweep on Hydra's launchers: one job per combination, e.g. model=a,b seed=0,1,2 "
        "hydra/launcher=joblib (docs/sweeps.md)",
    )
    run.add_argument(
        "--sweep", metavar="NAME", help="with --multirun: the sweep folder's name under runs/sweeps"
    )
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    prep = sub.add_parser("prepare", help="build or resume the sample store only")
    prep.add_argument("--rebuild", action="store_true", help="delete the cached store first")
    prep.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    models = sub.add_parser("models", help="the model registry")
    models_sub = models.add_subparsers(dest="action", required=True)
    lst = models_sub.add_parser("list", help="print the model card of every registered model")
    lst.add_argument("--json", action="store_true", help="JSON instead of a table")
    lst.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. 'conv4d*'")
    lst.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="configuration override, as for run (e.g. -o param_budget=150000 -o frames=2)",
    )
    splits = sub.add_parser("splits", help="the registered splits")
    splits_sub = splits.add_subparsers(dest="action", required=True)
    splits_sub.add_parser("list", help="name and description of every registered split")
    show = splits_sub.add_parser(
        "show", help="resolve the configured split on its store: summary, domains, leakage check"
    )
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    board = sub.add_parser("leaderboard", help="leaderboard tables from result records")
    board_sub = board.add_subparsers(dest="action", required=True)
    render = board_sub.add_parser(
        "render", help="tables, plots and pages from records (files or run dirs)"
    )
    render.add_argument("paths", nargs="+", type=Path)
    render.add_argument(
        "--out", type=Path, help="write the files to this folder instead of printing Markdown"
    )
    render.add_argument(
        "--format",
        default="md,csv,tex,html",
        help="with --out: comma-separated formats among md, csv, tex, html (default: all)",
    )
    render.add_argument("--title", help="page title (default: the split name)")
    render.add_argument("--name", help=f"with --out: {NAME_HELP}")
    publish = board_sub.add_parser(
        "publish",
        help="render records (files or run dirs) into the published boards (leaderboard/results)",
    )
    publish.add_argument("paths", nargs="+", type=Path)
    publish.add_argument(
        "--out",
        type=Path,
        default=Path("leaderboard/results"),
        help="the published boards' folder (default: leaderboard/results)",
    )
    publish.add_argument("--title", help="page title (default: the split name)")
    publish.add_argument("--name", help=NAME_HELP)
    validate = board_sub.add_parser(
        "validate", help="check result records against the schema (files or run dirs)"
    )
    validate.add_argument("paths", nargs="+", type=Path)
    report = sub.add_parser("report", help="studies computed from result records")
    report_sub = report.add_subparsers(dest="action", required=True)
    reports = (
        (
            "input-config",
            "skill against frames, step, window, bands and architecture, with seed-level tests, "
            "the OOD decomposition and the ceilings (docs/evaluation.md)",
            "records or run folders of one split",
            "input_configuration",
        ),
        (
            "ceiling",
            "the ceiling of the temporal gain per region: last frame, sequence and oracle "
            "trained in each region, with seed-level tests (docs/evaluation.md)",
            "records or run folders, one split per region",
            "temporal_ceiling",
        ),
    )
    for action, about, paths, name in reports:
        study = report_sub.add_parser(action, help=about)
        study.add_argument("paths", nargs="+", type=Path, help=paths)
        study.add_argument(
            "--reference",
            default="static_cnn",
            help="the model every configuration is tested against",
        )
        study.add_argument(
            "--out", type=Path, help="write NAME.md and NAME.html here instead of printing Markdown"
        )
        study.add_argument(
            "--name", default=name, help="with --out: the files' name (no extension)"
        )
    pred = sub.add_parser(
        "evaluate-predictions",
        help="score a CF netCDF of predicted rain rates against a truth file (docs/predictions.md)",
    )
    pred.add_argument("--pred", type=Path, required=True, help="predictions (rain_rate, mm/h)")
    pred.add_argument("--truth", type=Path, required=True, help="truth on the same grid and times")
    pred.add_argument("--json", action="store_true", help="JSON instead of text")
    store = sub.add_parser("store", help="sample store tools")
    store_sub = store.add_subparsers(dest="action", required=True)
    verify = store_sub.add_parser("verify", help="check shard checksums against the manifest")
    verify.add_argument("store", type=Path)
    inspect = sub.add_parser(
        "inspect", help="what a radar or satellite file holds; a radar directory is scanned"
    )
    inspect.add_argument("path", type=Path, nargs="?", help="a file, or a directory to scan")
    inspect.add_argument("--json", action="store_true", help="JSON with stable keys")
    inspect.add_argument("--source", help="force a reader instead of detecting the format")
    inspect.add_argument("--readers", action="store_true", help="list the registered readers")
    return parser


def _echo(text: str) -> None:
    """Print ``text`` to standard output without control characters (file content may hold any)."""
    print(printable(text))


def _error_line(exc: Exception) -> str:
    """An error as one printable line; an unexpected one's line says how to see the traceback."""
    if isinstance(exc, QpebenchError | FileNotFoundError):
        text = str(exc)
    elif isinstance(exc, MemoryError):
        text = f"out of memory ({str(exc) or 'the input is too large'})"
    elif isinstance(exc, KeyError):
        text = f"missing key {exc} in the input"
    else:
        text = describe(exc)
    if not isinstance(exc, QpebenchError | FileNotFoundError):
        text += "; --debug shows the traceback"
    return one_line(printable(text))


def _readers(as_json: bool) -> int:
    from qpebench.registry import RADAR_READERS

    readers = [RADAR_READERS.get(name) for name in RADAR_READERS.names()]
    if as_json:
        rows = [
            {"name": r.name, "network": r.network, "description": r.description} for r in readers
        ]
        _echo(json.dumps(rows, indent=2))
    else:
        for r in readers:
            _echo(f"{r.name:<16} {r.network:<34} {r.description}")
    return 0


def _inspect(path: Path | None, as_json: bool, source: str | None) -> int:
    from qpebench.datasets.radar import detect_source, read_native, scan_radar, summarize
    from qpebench.datasets.satellite import (
        detect_satellite_source,
        read_satellite,
        scan_files,
        summarize_scan,
    )
    from qpebench.errors import FileFormatError
    from qpebench.registry import SATELLITE_READERS

    if path is None:
        raise ConfigError("inspect needs a file or directory (or --readers)")
    if not path.is_dir():
        satellite = source in SATELLITE_READERS
        if source is None:
            try:
                detect_source(path)
            except FileFormatError as radar_error:
                try:
                    detect_satellite_source(path)
                except FileFormatError:
                    raise radar_error from None
                satellite = True
        if satellite:
            files = scan_files(path, source=source)
            held = summarize_scan(read_satellite(files, bands="all", source=source, with_vza=False))
            _echo(json.dumps(held, indent=2) if as_json else _scan_text(held))
            return 0
        summary = summarize(read_native(path, source=source))
        _echo(json.dumps(summary, indent=2) if as_json else _summary_text(summary))
        return 0
    scan = scan_radar(path, source=source)
    if as_json:
        bad = [{"file": str(b.path), "error": b.error} for b in scan.bad]
        _echo(json.dumps({"good": scan.good, "bad": bad}, indent=2))
    else:
        for s in scan.good:
            counts = s["counts"]
            _echo(
                f"{s['valid_time']}  {s['source']:<15} {s['quantity']:<6} "
                f"{counts['valid']:>9} valid {counts['no_data']:>9} no data  {s['file']}"
            )
        _echo(scan.report())
    return 1 if scan.bad else 0


def _scan_text(s: dict[str, Any]) -> str:
    rows = [
        ("files", f"{len(s['files'])}: {s['files'][0]}{' …' if len(s['files']) > 1 else ''}"),
        ("source", f"{s['source']} ({s['sensor']}, {s['platform']})"),
        ("shape", f"{s['shape'][0]} rows × {s['shape'][1]} columns"),
        ("crs", s["crs"]),
        ("cell size", f"{s['cell_size'][0]:.1f} × {s['cell_size'][1]:.1f} m"),
        ("nominal time", s["nominal_time"]),
        ("observed", f"{s['start_time']} – {s['end_time']}"),
    ]
    for b in s["bands"]:
        values = (
            f"{b['min']:.2f} / {b['mean']:.2f} / {b['max']:.2f} K"
            if b["min"] is not None
            else "no valid cell"
        )
        rows.append((b["band"], f"{b['channel']} {b['wavelength_um']:g} µm  min/mean/max {values}"))
    return "\n".join(f"{k:<14}{v}" for k, v in rows)


def _summary_text(s: dict[str, Any]) -> str:
    c, st = s["counts"], s["stats"]
    window = (
        f"{s['start_time']} – {s['valid_time']} ({s['accumulation_minutes']:g}-min accumulation)"
        if s["accumulation_minutes"]
        else "instantaneous"
    )
    values = (
        f"min {st['min']:.4g}  mean {st['mean']:.4g}  max {st['max']:.4g} {s['units']}"
        if st["min"] is not None
        else "none valid"
    )
    rows = [
        ("file", s["file"]),
        ("source", f"{s['source']} ({s['network']})"),
        ("product", s["product"]),
        ("quantity", f"{s['quantity']} ({s['kind']}, {s['units']})"),
        ("shape", f"{s['shape'][0]} rows × {s['shape'][1]} columns"),
        ("crs", s["crs"]),
        ("cell size", f"{s['cell_size'][0]:g} × {s['cell_size'][1]:g} {s['cell_size_units']}"),
        ("valid time", s["valid_time"]),
        ("window", window),
        (
            "cells",
            f"{c['cells']}: valid {c['valid']} (echo {c['echo']}, no echo {c['no_echo']}), "
            f"no data {c['no_data']}",
        ),
        ("valid values", values),
        ("quality field", "yes" if s["has_quality"] else "no"),
    ]
    return "\n".join(f"{k:<14}{v}" for k, v in rows)


def _models_list(pattern: str, as_json: bool, overrides: Sequence[str]) -> None:
    from qpebench.runner import build_configured

    cfg = run_config(compose_config(list(overrides)))
    cards = [build_configured(name, cfg).card for name in MODELS.names(pattern)]
    if as_json:
        _echo(json.dumps([c.to_json() for c in cards], indent=2))
        return
    n = max([len(c.name) for c in cards] + [4])
    _echo(
        f"{'name':<{n}} {'family':<10} {'frames':>6} {'step':>4} {'bands':>5} {'params':>9} "
        f"{'MFLOP':>8} {'outputs':<7} description"
    )
    for c in cards:
        _echo(
            f"{c.name:<{n}} {c.family:<10} {c.frames:>6} {c.step:>4} {len(c.bands):>5} "
            f"{c.parameters:>9,} {c.flops_per_sample / 1e6:>8.1f} {'+'.join(c.outputs):<7} "
            f"{c.description}"
        )


def _splits(action: str, overrides: Sequence[str]) -> None:
    from qpebench.registry import SPLITS
    from qpebench.splits import format_summary

    if action == "list":
        for name in SPLITS.names():
            _echo(f"{name}: {' '.join(SPLITS.get(name).description.split())}")
        return
    from qpebench.runner import prepare_store

    cfg = run_config(compose_config(list(overrides)))
    store = prepare_store(cfg.data, cfg.cache_dir, progress=cfg.progress)
    split = cfg.split.resolve(
        store.metadata,
        patch_shape=store.patch_shape,
        frames=store.frames,
        grids=store.manifest["grids"],
    )
    _echo(f"split {cfg.split.name} on {store.root} (dataset version {store.dataset_version})")
    _echo(format_summary(split.summary(store.metadata)))
    domains = split.domains()
    _echo("domains: " + ", ".join(f"{k} = {v}" for k, v in domains.items()))
    _echo("no shared sample, no overlapping patch at adjacent times")


def _record_files(paths: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """The record files of ``paths`` (files, job or run folders); a line per unfinished run.

    Raises:
        RecordError: No record and no run folder, or a malformed ``run.json``.
    """
    from qpebench.leaderboard.sources import find_records

    sources = find_records(paths)
    if not sources.files and not sources.runs:
        raise RecordError(f"no result record in {[str(p) for p in paths]}")
    return list(sources.files), [run.describe() for run in sources.unfinished]


def _validate(paths: Sequence[Path]) -> int:
    """Check every record and its day states; one line per bad one and per unfinished run.

    Exit status 1 when a record or its state file is bad, or a run is unfinished.
    """
    from qpebench.states import read_states

    bad = 0
    files, unfinished = _record_files(paths)
    for f in files:
        try:
            record = load_record(f)
            if "states" in record:
                read_states(f, record)
        except RecordError as exc:
            bad += 1
            _echo(f"invalid: {exc}")
    for line in unfinished:
        _echo(f"unfinished: {line}")
    _echo(f"{len(files) - bad} of {len(files)} records valid")
    return 1 if bad or unfinished else 0


def _render(
    paths: Sequence[Path], out: Path | None, formats: str, title: str | None, name: str | None
) -> None:
    """Render the records of ``paths``, comparing models on the day states the records have.

    An unfinished run gives a one-line warning on standard error; its finished jobs are rendered.
    """
    from qpebench.leaderboard import leaderboard_markdown, render
    from qpebench.leaderboard.sources import load_records

    if name is not None and out is None:
        raise ConfigError("--name names the files of --out; add --out FOLDER")
    files, unfinished = _record_files(paths)
    for line in unfinished:
        print(f"qpebench: warning: {printable(line)}; rendering those", file=sys.stderr)
    records, states = load_records(files)
    if out is None:
        _echo(leaderboard_markdown(records, title, states))
        return
    chosen = [f.strip() for f in formats.split(",")]
    for fmt, path in render(records, out, chosen, title, states, name).items():
        _echo(f"{fmt}: {path}")


def _report(
    action: str, paths: Sequence[Path], reference: str, out: Path | None, name: str
) -> None:
    """The ``action`` report of the records of ``paths`` (printed, or written to ``out``)."""
    from qpebench.atomic import write_bytes_atomic
    from qpebench.leaderboard.input_config import input_config_report
    from qpebench.leaderboard.region_ceiling import region_ceiling_report
    from qpebench.leaderboard.sources import load_records

    files, unfinished = _record_files(paths)
    for line in unfinished:
        print(f"qpebench: warning: {printable(line)}; reporting those", file=sys.stderr)
    records, states = load_records(files)
    make = input_config_report if action == "input-config" else region_ceiling_report
    result = make(records, states, reference)
    if out is None:
        _echo(result.markdown())
        return
    check_name(name, "--name")
    check_writable(out, "--out")
    for suffix, text in ((".md", result.markdown()), (".html", result.html())):
        path = out / f"{name}{suffix}"
        write_bytes_atomic(path, text.encode("utf-8"))
        _echo(f"{suffix[1:]}: {path}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qpebench`` console script."""
    args = _parser().parse_args(argv)
    try:
        load_builtins()
        if args.command == "run" and args.multirun:
            from qpebench.sweep import run_sweep

            for line in run_sweep(args.overrides, args.sweep):
                _echo(line)
        elif args.command == "run":
            from qpebench.runner import run_benchmark

            if args.sweep:
                raise ConfigError("--sweep names the folder of a --multirun sweep; add --multirun")
            result = run_benchmark(run_config(compose_config(args.overrides)))
            print()
            for line in result.summary:
                _echo(line)
        elif args.command == "prepare":
            from qpebench.runner import prepare_store, rebuild_store

            cfg = run_config(compose_config(args.overrides))
            make = rebuild_store if args.rebuild else prepare_store
            store = make(cfg.data, cfg.cache_dir, progress=cfg.progress)
            _echo(f"{store.root}: {len(store)} samples, dataset version {store.dataset_version}")
        elif args.command == "models":
            _models_list(args.pattern, args.json, args.overrides)
        elif args.command == "splits":
            _splits(args.action, getattr(args, "overrides", []))
        elif args.command == "leaderboard":
            if args.action == "validate":
                return _validate(args.paths)
            if args.action == "publish":
                _render(args.paths, args.out, "md", args.title, args.name)
            else:
                _render(args.paths, args.out, args.format, args.title, args.name)
        elif args.command == "report":
            _report(args.action, args.paths, args.reference, args.out, args.name)
        elif args.command == "evaluate-predictions":
            from qpebench.predictions import evaluate_predictions, format_report

            scored = evaluate_predictions(args.pred, args.truth)
            _echo(
                json.dumps(scored, indent=2, allow_nan=False)
                if args.json
                else format_report(scored)
            )
        elif args.command == "store":
            SampleStore(args.store).verify()
            _echo(f"{args.store}: every shard matches the manifest")
        elif args.command == "inspect":
            if args.readers:
                return _readers(args.json)
            return _inspect(args.path, args.json, args.source)
    except Exception as exc:  # one line for every failure; --debug re-raises
        if args.debug:
            raise
        print(f"qpebench: error: {_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("qpebench: interrupted (a store build resumes where it stopped)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
