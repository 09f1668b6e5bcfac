"""`klinecast ingest | candles | features`: the data stages."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from klinecast.cli.common import StageRun, load_symbol_params, read_parquet, stage_args


def add_ingest(commands) -> None:
    parser = commands.add_parser(
        "ingest",
        help="download and verify Binance kline archives into data/raw",
        description=(
            "Download the monthly kline archives of every symbol in data.symbols from "
            "data.start (or the symbol's listing) through the last complete month (or "
            "data.end), then the current month's daily archives, in the data.binance.vision "
            "layout, into data/raw/<symbol>. Every symbol is looked up before any download. "
            "Every zip is checked against its .CHECKSUM; archives already verified are not "
            "downloaded again."
        ),
    )
    stage_args(parser)
    parser.add_argument(
        "--base-url",
        help=(
            "where the archives live: an http(s) URL, file:// URL or directory laid out like "
            "data.binance.vision (default: data.base_url; $KLINECAST_BASE_URL overrides it)"
        ),
    )
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        help="last day to fetch, YYYY-MM-DD (overrides data.end)",
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="parallel downloads (default: %(default)s)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_ingest)


def run_ingest(args) -> int:
    import dataclasses

    from klinecast.book import Layout
    from klinecast.stages.ingest import ingest

    params = load_symbol_params(args)  # the book's symbols, or --symbol's alone
    if args.end is not None:
        params = dataclasses.replace(params, data=dataclasses.replace(params.data, end=args.end))
    started = time.perf_counter()
    result = ingest(
        params, raw=Layout(args.root).book.raw, today=dt.datetime.now(dt.UTC).date(),
        base_url=args.base_url, workers=args.workers, progress=False if args.no_progress else None,
    )  # fmt: skip
    counts = result.summary()
    print(
        f"ingest: {counts['planned']} archive(s) planned from {args.base_url or params.data.base_url}: "
        f"{counts['downloaded']} downloaded ({counts['downloaded_bytes'] / 1e6:.1f} MB), "
        f"{counts['already_verified']} already verified, {counts['not_yet_published']} not "
        f"published yet, {counts['pruned']} daily archive(s) pruned; "
        f"{time.perf_counter() - started:.1f} s"
    )
    for symbol, month in result.listed_later.items():
        print(f"ingest: {symbol}: the source's archives start {month}, after data.start")
    return 0


def add_candles(commands) -> None:
    parser = commands.add_parser(
        "candles",
        help="parse + validate data/raw into one Parquet candle file and a report per symbol",
        description=(
            "Parse every verified archive of each symbol (data/raw/<symbol>), validate the "
            "candle rules (hourly index, no duplicates, OHLC, non-negative volumes), and write "
            "data/<symbol>/candles.parquet plus a JSON report of rows, span and gaps. Gaps are "
            "reported, not filled."
        ),
    )
    stage_args(parser)
    parser.add_argument(
        "--reference",
        action="store_true",
        help="build features.reference's candles (data/reference.parquet) for the cross-asset "
        "features instead (an empty file when features.cross_asset is empty)",
    )
    parser.set_defaults(run=run_candles)


def run_candles(args) -> int:
    from klinecast.stages import candles

    run = StageRun(args)
    raw = run.layout.book.raw
    if args.reference:
        out = run.layout.book.reference
        found = candles.reference(run.params, raw=raw, out=out)
        what = "no features.cross_asset, no reference candles" if found is None else (
            f"{run.params.features.reference} (the cross-asset reference): {found.rows} rows, "
            f"{found.first} .. {found.last}"
        )  # fmt: skip
        print(f"candles: {what} -> {out}")
        return 0
    for symbol in run.symbols:
        started, files = time.perf_counter(), run.files(symbol)
        report = candles.candles(
            run.params, symbol, raw=raw, out=files.candles, report=files.candles_report
        )
        print(
            f"candles: {symbol}: {report.rows} rows from {report.files} archive(s), "
            f"{report.first} .. {report.last}, {len(report.gaps)} gap(s) "
            f"({report.missing_candles} missing candles); {time.perf_counter() - started:.1f} s "
            f"-> {files.candles}"
        )
    return 0


def add_features(commands) -> None:
    parser = commands.add_parser(
        "features",
        help="compute TA-Lib features and the next-hour label from the candles",
        description=(
            "Compute each symbol's features.indicators (e.g. ma_ratio_5, rsi_14, mfi_21), then "
            "features.cross_asset of the reference's candles, and the label (does the next "
            "candle close higher?) with the same function the model server uses, into "
            "data/<symbol>/features.parquet. Rows whose indicator window crosses a gap are "
            "dropped and counted. "
            "With --measure, measure instead how many candles of history serving needs.\n\n"
            "`klinecast features sync` brings the Feast online store (online.* in params.yaml, "
            "$KLINECAST_REDIS) up to the newest closed candle: it fetches the candles closed "
            "since the store's newest row from Binance REST ($KLINECAST_BINANCE_URL), or from "
            "archives with --base-url, computes the new rows with the same function, and writes "
            "them oldest first. Idempotent; a failed sync keeps what it wrote."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "action", nargs="?", choices=["sync"], help="sync: write new rows to the online store"
    )
    stage_args(parser)
    parser.add_argument(
        "--measure",
        action="store_true",
        help="measure the candles of history after which short-window features equal full-history ones",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=1000,
        help="end points checked by --measure (default: %(default)s)",
    )
    sync = parser.add_argument_group("sync")
    sync.add_argument(
        "--base-url",
        help="read candles from archives in the data.binance.vision layout at this URL (a "
        "mirror, offline) instead of Binance REST",
    )
    sync.add_argument(
        "--archive-cache",
        type=Path,
        default=Path("build/sync-archives"),
        help="where --base-url archives are kept verified between syncs (default: %(default)s)",
    )
    sync.add_argument(
        "--redis",
        help="the online store's connection string host:port[,db=N] (default: $KLINECAST_REDIS, "
        "else online.redis)",
    )
    sync.add_argument("--now", help="the clock, ISO 8601 UTC (default: the real time)")
    parser.set_defaults(run=run_features)


def run_features(args) -> int:
    if args.action == "sync":
        return run_sync(args)
    if args.measure:
        return run_measure(args)
    from klinecast.stages.features import features

    run = StageRun(args)
    for symbol in run.symbols:
        started, files = time.perf_counter(), run.files(symbol)
        found = features(
            run.params, symbol, candles=files.candles, reference=run.layout.book.reference,
            out=files.features, report=files.features_report,
        )  # fmt: skip
        print(
            f"features: {symbol}: {len(found.frame)} rows x {len(run.params.features.names)} "
            f"features, {found.labeled} labeled; dropped {found.dropped_at_start} at the start "
            f"and {found.dropped_after_gaps} whose window crosses a gap; "
            f"{time.perf_counter() - started:.1f} s -> {files.features}"
        )
    return 0


def run_measure(args) -> int:
    from klinecast.research.features import measure_min_history

    run = StageRun(args)
    features, interval = run.params.features, run.params.data.interval_delta
    verdicts = []
    for symbol in run.symbols:
        started = time.perf_counter()
        candles = read_parquet(run.files(symbol).candles, produced_by="klinecast candles")
        needed = measure_min_history(
            candles, indicators=features.indicators, interval=interval, samples=args.samples
        )
        verdicts.append(verdict := "ok" if features.min_history >= needed else "TOO SMALL")
        print(
            f"min_history: {symbol}: {needed} candles make every one of {args.samples} sampled "
            f"rows agree to 1e-9; params features.min_history = {features.min_history} "
            f"({verdict}); {time.perf_counter() - started:.1f} s"
        )
    return 0 if set(verdicts) == {"ok"} else 1


def run_sync(args) -> int:
    import dataclasses

    import pandas as pd

    from klinecast.redaction import redact_redis
    from klinecast.serving import feature_sync

    params = load_symbol_params(args)  # every symbol of data.symbols, or --symbol alone
    if args.redis:
        params = dataclasses.replace(
            params, online=dataclasses.replace(params.online, redis=args.redis)
        )
    now = pd.Timestamp(args.now or dt.datetime.now(dt.UTC))
    now = now.tz_localize("UTC") if now.tzinfo is None else now.tz_convert("UTC")
    started = time.perf_counter()
    results, where = feature_sync.sync_store(
        params, now=now, base_url=args.base_url, archive_cache=args.archive_cache
    )
    print(
        f"features sync: {'; '.join(map(str, results))} from {where} -> {redact_redis(params.online.redis)} "
        f"(project {params.online.project}); {time.perf_counter() - started:.1f} s"
    )
    return 0
