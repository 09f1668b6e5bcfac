"""`klinecast pool | portfolio`: the stages of the whole book."""

from __future__ import annotations

import time

from klinecast.cli.common import StageRun, params_arg, root_arg


def add_portfolio(commands) -> None:
    parser = commands.add_parser(
        "portfolio",
        help="combine every symbol's out-of-sample result into the book, with its own gate",
        description=(
            "Read each symbol's evaluate, tune and publish outputs (reports/symbols/<symbol>), "
            "combine their after-cost hourly returns at portfolio.weights (equal capital by "
            "default), and the baselines the same way; test the book against every declared "
            "baseline with the bootstrap the gate uses. Writes reports/portfolio.json (the "
            "figures, the portfolio gate and the symbols the trader may trade: those whose own "
            "model passed), the daily equity and the page."
        ),
    )
    params_arg(parser)
    root_arg(parser)
    parser.set_defaults(run=run_portfolio, symbol=None)


def run_portfolio(args) -> int:
    from klinecast.stages.portfolio import PortfolioFiles, portfolio

    run = StageRun(args)
    started, where = time.perf_counter(), run.layout.book
    out = PortfolioFiles(where.portfolio, where.portfolio_equity, where.portfolio_page)
    book = portfolio(run.params, files_of=run.files, out=out)
    for line in book.symbols:
        print(
            f"portfolio: {line.symbol} ({line.weight:.0%}): {line.model_return:+.2%} after costs, "
            f"largest p {line.max_p_value:.3f}; its gate {'passed' if line.passed else 'refused'}"
        )
    print(
        f"portfolio: the book {book.model.cumulative_return:+.2%} after costs (Sharpe "
        f"{book.model.sharpe:+.2f}); portfolio gate {'passed' if book.gate.passed else 'refused'}; "
        f"traded: {', '.join(book.traded) or 'none'}; {time.perf_counter() - started:.1f} s -> "
        f"{out.figures}"
    )
    for reason in book.gate.reasons():
        print(f"portfolio:   {reason}")
    return 0


def add_pool(commands) -> None:
    parser = commands.add_parser(
        "pool",
        help="what the book's symbols share: the pooled model's study and record",
        description=(
            "With tune.pooling: pooled, run the pooled model's study over every symbol's rows "
            "(once for the book: each symbol's tune then finds it complete) and record each "
            "symbol's features digest, weight and the study, in reports/pool.json, on which "
            "every symbol's tune, evaluate and train depend. With per_symbol, write the same few "
            "bytes every time, so that a symbol's new data reruns only its own stages."
        ),
    )
    params_arg(parser)
    root_arg(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(run=run_pool, symbol=None)


def run_pool(args) -> int:
    from klinecast.cli.model import progress_bar
    from klinecast.stages.pool import pool

    run = StageRun(args)
    out = run.layout.book.pool
    with progress_bar(run.params.tune.n_trials, "pooled study", args.no_progress) as bar:
        found = pool(run.params, features=run.features, out=out, progress=bar)
    what = f"one model over {', '.join(found.pooled)}" if found.pooled else "a model per symbol"
    print(f"pool: {what} -> {out}")
    return 0
