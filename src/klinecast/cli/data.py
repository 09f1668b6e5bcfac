"""`klinecast ingest | candles | features`: the data stages."""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from klinecast.cli.common import load_symbol_params, params_arg, read_parquet, symbol_arg


def add_ingest(commands) -> None:
    parser = commands.add_parser(
        "ingest",
        help="download and verify Binance kline archives into data/raw",
        description=(
            "Download the monthly kline archives of every symbol in data.symbols from "
            "data.start (or the symbol's listing) through the last complete month (or "
            "data.end), then the current month's daily archives, in the data.binance.vision "
            "layout, into --raw-dir/<symbol>. Every symbol is looked up before any download. Every zip is checked against its .CHECKSUM; archives "
            "already verified in --raw-dir are not downloaded again."
        ),
    )
    params_arg(parser)
    parser.add_argument(
        "--base-url",
        help=(
            "where the archives live: an http(s) URL, file:// URL or directory laid out like "
            "data.binance.vision (default: data.base_url; $KLINECAST_BASE_URL overrides it)"
        ),
    )
    parser.add_argument(
        "--raw-dir", type=Path, default=Path("data/raw"), help="default: %(default)s"
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

    from klinecast.config import load_params
    from klinecast.data.ingest import ingest

    params = load_params(args.params).data
    if args.end is not None:
        params = dataclasses.replace(params, end=args.end)
    started = time.perf_counter()
    result = ingest(
        params,
        raw_dir=args.raw_dir,
        base_url=args.base_url,
        today=dt.datetime.now(dt.UTC).date(),
        workers=args.workers,
        progress=False if args.no_progress else None,
    )
    counts = result.summary()
    print(
        f"ingest: {counts['planned']} archive(s) planned from {args.base_url or params.base_url}: "
        f"{counts['downloaded']} downloaded ({counts['downloaded_bytes'] / 1e6:.1f} MB), "
        f"{counts['already_verified']} already verified, {counts['not_yet_published']} not "
        f"published yet, {counts['pruned']} daily archive(s) pruned; "
        f"{time.perf_counter() - started:.1f} s"
    )
    for symbol, month in result.listed_later.items():
        print(
            f"ingest: {symbol}: the source's archives start {month}, after data.start {params.start}"
        )
    return 0


def add_candles(commands) -> None:
    parser = commands.add_parser(
        "candles",
        help="parse + validate data/raw into one Parquet candle file and a report",
        description=(
            "Parse every verified archive of data.symbol/data.interval, validate the candle "
            "rules (hourly index, no duplicates, OHLC, non-negative volumes), and write the "
            "candles plus a JSON report of rows, span and gaps. Gaps are reported, not filled."
        ),
    )
    params_arg(parser)
    symbol_arg(parser)
    parser.add_argument(
        "--raw-dir",
        type=Path,
        default=Path("data/raw"),
        help="the archives, a folder per symbol (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/candles.parquet"), help="default: %(default)s"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("reports/candles.json"), help="default: %(default)s"
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="build features.reference's candles, for the cross-asset features (an empty file "
        "when features.cross_asset is empty); no report",
    )
    parser.set_defaults(run=run_candles)


def run_candles(args) -> int:
    from klinecast import atomic
    from klinecast.data.archives import symbol_dir
    from klinecast.data.build import build_candles

    if args.reference:
        return run_reference_candles(args)
    params = load_symbol_params(args).data
    started = time.perf_counter()
    candles, report = build_candles(symbol_dir(args.raw_dir, params.symbol), params)
    atomic.write_parquet(args.out, candles)
    atomic.write_json(args.report, report.as_dict())
    print(
        f"candles: {params.symbol}: {report.rows} rows from {report.files} archive(s), {report.first} .. "
        f"{report.last}, {len(report.gaps)} gap(s) ({report.missing_candles} missing candles); "
        f"{time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


def run_reference_candles(args) -> int:
    """dvc.yaml's reference stage: the reference's candles, or an empty file without
    cross-asset features (the same bytes every time, so no symbol's features re-run)."""
    import dataclasses

    import pandas as pd

    from klinecast import atomic
    from klinecast.config import load_params
    from klinecast.data.archives import symbol_dir
    from klinecast.data.build import build_candles

    params = load_params(args.params)
    features = params.features
    if not features.cross_asset:
        atomic.write_parquet(args.out, pd.DataFrame())
        print(f"candles: no features.cross_asset, no reference candles -> {args.out}")
        return 0
    data = dataclasses.replace(params.data, symbols=(features.reference,))
    candles, report = build_candles(symbol_dir(args.raw_dir, features.reference), data)
    atomic.write_parquet(args.out, candles)
    print(
        f"candles: {features.reference} (the cross-asset reference): {report.rows} rows, "
        f"{report.first} .. {report.last} -> {args.out}"
    )
    return 0


def add_features(commands) -> None:
    parser = commands.add_parser(
        "features",
        help="compute TA-Lib features and the next-hour label from the candles",
        description=(
            "Compute features.indicators (e.g. ma_ratio_5, rsi_14, mfi_21) and the label "
            "(does the next candle close higher?) with the same function the model server "
            "uses. Rows whose indicator window crosses a gap are dropped and counted. "
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
    params_arg(parser)
    symbol_arg(parser)
    parser.add_argument(
        "--candles", type=Path, default=Path("data/candles.parquet"), help="default: %(default)s"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/features.parquet"), help="default: %(default)s"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("reports/features.json"), help="default: %(default)s"
    )
    parser.add_argument(
        "--reference-candles",
        type=Path,
        help="features.reference's candles, for features.cross_asset (`candles --reference`)",
    )
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
    from klinecast import atomic
    from klinecast.errors import KlinecastError
    from klinecast.indicators import indicator_lookback
    from klinecast.research.features import measure_min_history, symbol_features

    params = load_symbol_params(args)
    candles = read_parquet(args.candles, produced_by="klinecast candles")
    indicators = params.features.indicators
    interval = params.data.interval_delta
    if args.measure:
        started = time.perf_counter()
        needed = measure_min_history(
            candles, indicators=indicators, interval=interval, samples=args.samples
        )
        verdict = "ok" if params.features.min_history >= needed else "TOO SMALL"
        print(
            f"min_history: {needed} candles make every one of {args.samples} sampled rows agree "
            f"to 1e-9; params features.min_history = {params.features.min_history} ({verdict}); "
            f"{time.perf_counter() - started:.1f} s"
        )
        return 0 if verdict == "ok" else 1
    started = time.perf_counter()
    reference = (
        read_parquet(args.reference_candles, produced_by="klinecast candles --reference")
        if args.reference_candles and params.features.cross_asset
        else None
    )
    result = symbol_features(
        candles, params.features, interval=interval, reference_candles=reference
    )
    if result.frame.empty:
        longest = max(indicator_lookback(name) for name in indicators)
        raise KlinecastError(
            f"no feature rows: the {len(candles)} candles are fewer than the longest indicator "
            f"window ({longest} candles) needs; ingest a longer span or drop the longest "
            "features from features.indicators (nothing was written)"
        )
    atomic.write_parquet(args.out, result.frame)
    atomic.write_json(args.report, result.report(min_history=params.features.min_history))
    print(
        f"features: {len(result.frame)} rows x {len(params.features.names)} features, "
        f"{result.labeled} labeled; dropped {result.dropped_at_start} at the start and {result.dropped_after_gaps} "
        f"whose window crosses a gap; {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    return 0


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
