"""`klinecast portfolio`: the book over every symbol of data.symbols, and its gate."""

from __future__ import annotations

import time
from pathlib import Path

from klinecast.cli.common import params_arg, path


def add_portfolio(commands) -> None:
    parser = commands.add_parser(
        "portfolio",
        help="combine every symbol's out-of-sample result into the book, with its own gate",
        description=(
            "Read each symbol's evaluate, tune and publish outputs (reports/symbols/<symbol>), "
            "combine their after-cost hourly returns at portfolio.weights (equal capital by "
            "default), and the baselines the same way; test the book against every declared "
            "baseline with the bootstrap the gate uses. Writes the figures, the portfolio gate "
            "and the symbols the trader may trade (those whose own model passed)."
        ),
    )
    params_arg(parser)
    path(parser, "--reports", "reports", "where reports/symbols/<symbol> are")
    path(parser, "--out", "reports/portfolio.json", "the book's figures and gates")
    path(parser, "--equity", "reports/portfolio_equity.csv", "daily equity of the book (dvc plots)")
    path(parser, "--page", "reports/portfolio.html", "the book's HTML page")
    parser.set_defaults(run=run_portfolio)


def run_portfolio(args) -> int:
    from klinecast import atomic
    from klinecast.config import load_params
    from klinecast.release import book as books
    from klinecast.research.portfolio import daily_equity

    params = load_params(args.params)
    started = time.perf_counter()
    book, returns = books.evaluate_book(params, Path(args.reports))
    atomic.write_json(args.out, book.as_dict())
    atomic.atomic_write(args.equity, lambda tmp: daily_equity(returns).to_csv(tmp))
    page = books.render(book, returns)
    atomic.atomic_write(args.page, lambda tmp: tmp.write_text(page))
    for line in book.symbols:
        print(
            f"portfolio: {line.symbol} ({line.weight:.0%}): {line.model_return:+.2%} after costs, "
            f"largest p {line.max_p_value:.3f}; its gate {'passed' if line.passed else 'refused'}"
        )
    verdict = "passed" if book.gate.passed else "refused"
    print(
        f"portfolio: the book {book.model.cumulative_return:+.2%} after costs (Sharpe "
        f"{book.model.sharpe:+.2f}); portfolio gate {verdict}; traded: "
        f"{', '.join(book.traded) or 'none'}; {time.perf_counter() - started:.1f} s -> {args.out}"
    )
    for reason in book.gate.reasons():
        print(f"portfolio:   {reason}")
    return 0


def add_pool(commands) -> None:
    parser = commands.add_parser(
        "pool",
        help="record the pooled model's symbols and their features (dvc.yaml's pool stage)",
        description=(
            "With tune.pooling: pooled, write each symbol's features digest and weight: the one "
            "file every symbol's tune, evaluate and train depend on, so a change to any symbol's "
            "features re-runs them all. With per_symbol, write the same few bytes every time, so "
            "that a symbol's new data re-runs only its own stages."
        ),
    )
    params_arg(parser)
    path(parser, "--out", "reports/pool.json", "the pool's record")
    parser.set_defaults(run=run_pool)


def run_pool(args) -> int:
    from klinecast import atomic
    from klinecast.cli.common import load_pool

    pool = load_pool(args)
    if pool is None:
        atomic.write_json(args.out, {"pooling": "per_symbol"})
        print(f"pool: a model per symbol -> {args.out}")
        return 0
    atomic.write_json(args.out, {"pooling": "pooled", **pool.record()})
    print(f"pool: one model over {', '.join(pool.paths)} -> {args.out}")
    return 0
