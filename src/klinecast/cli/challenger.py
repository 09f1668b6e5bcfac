"""`klinecast challenger status|decide|promote|reject`: each symbol's challenger in shadow
beside its champion, and the decisions about it (`klinecast.monitor.promotion_rule`)."""

from __future__ import annotations

from klinecast.cli.common import decided_by, decision_args, params_arg, registry_arg


def add_challenger(commands) -> None:
    parser = commands.add_parser(
        "challenger",
        help="each symbol's challenger in shadow: side by side, and the promotion rule",
        description=(
            "A version that passes its gate while the symbol has a production version becomes "
            "its challenger (publish.challenger). The trader asks the challenger's "
            "InferenceService each hour (trade.challenger_url) and books its calls on paper, "
            "after the same costs: the shadow book. `status` shows both books side by side; "
            "`decide` applies the promotion rule (publish.challenger: min_hours, "
            "max_daily_shortfall, confidence) and promotes, rejects, or leaves it in shadow; "
            "`promote` and `reject` are an operator's decisions. Every decision is recorded in "
            "the registry with its evidence, and a decision counts the shadow span as one more "
            "look at unseen data."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    status = actions.add_parser("status", help="both books side by side, and the rule's verdict now")
    _common(status)
    status.set_defaults(run=run_status)
    decide = actions.add_parser("decide", help="apply the promotion rule to each challenger")
    _common(decide)
    decision_args(decide, default_reason="")
    decide.set_defaults(run=run_decide)
    for action, helped in (("promote", "promote the challenger now, whatever the rule says"),
                           ("reject", "end the challenger's shadow; production stays")):  # fmt: skip
        one = actions.add_parser(action, help=helped)
        one.add_argument("symbol", help="one of data.symbols, e.g. BTCUSDT")
        _common(one, symbols=False)
        decision_args(one, default_reason=f"operator {action}")
        one.set_defaults(run=run_operator)


def _common(parser, *, symbols: bool = True) -> None:
    params_arg(parser)
    if symbols:
        parser.add_argument(
            "--symbol", action="append", help="repeatable (default: every symbol of the book)"
        )
    registry_arg(parser)
    parser.add_argument(
        "--ledger", help="the ledger's URL (default: trade.ledger; $KLINECAST_LEDGER_URL overrides it)"
    )


class _Context:
    """What every action reads: the book, the registry, the ledger."""

    def __init__(self, args):
        from klinecast.book import Book
        from klinecast.config import load_params
        from klinecast.release import registry
        from klinecast.trader.ledger import Ledger

        self.book = Book(load_params(args.params))
        self.registry_uri = args.registry or self.book.params.publish.registry
        self.store = registry.open_store(self.registry_uri)
        self.ledger = Ledger(args.ledger or self.book.params.trade.ledger)
        self.ledger.migrate()
        self.rule = self.book.params.publish.challenger

    def symbols(self, named) -> list[str]:
        from klinecast.errors import KlinecastError

        symbols = [s.upper() for s in named] if named else list(self.book.symbols)
        unknown = [s for s in symbols if s not in self.book.symbols]
        if unknown:
            raise KlinecastError(f"{', '.join(unknown)} not in the book ({', '.join(self.book.symbols)})")
        return symbols

    def shadow(self, symbol: str):
        """(the challenger's pointer, the rule's decision over its shadow book), or (None, None)."""
        from klinecast.monitor import promotion_rule
        from klinecast.release import registry
        from klinecast.trader.shadow import compare

        pointer = registry.challenger(self.store, self.book.model_name(symbol))
        if pointer is None:
            return None, None
        side = compare(self.ledger, symbol, pointer["version"])
        return pointer, promotion_rule.decide(side, self.rule)


def run_status(args) -> int:
    context = _Context(args)
    for symbol in context.symbols(args.symbol):
        pointer, decision = context.shadow(symbol)
        if pointer is None:
            print(f"challenger: {symbol}: no challenger in shadow")
            continue
        print(f"challenger: {symbol}: {pointer['version']} in shadow since {pointer['since']}")
        for line in side_by_side(decision.evidence):
            print(f"challenger: {symbol}:   {line}")
        print(f"challenger: {symbol}: the rule says {decision.action}: {decision.reason}")
    return 0


def side_by_side(evidence: dict) -> list[str]:
    """The two books' figures as aligned lines (none before a settled hour)."""
    if not evidence:
        return ["no shadow hour settled beside a traded one yet"]
    rows = [f"{'':<12}{'return':>10}{'hit rate':>10}{'changes':>9}{'drawdown':>10}"]
    for name in ("champion", "challenger"):
        f = evidence[name]
        hit = "-" if f["hit_rate"] is None else f"{f['hit_rate']:.1%}"
        rows.append(
            f"{name:<12}{f['total_return']:>+10.2%}{hit:>10}{f['changes']:>9}{f['max_drawdown']:>+10.2%}"
        )
    rows.append(f"over {evidence['hours']} hours ({evidence['first_hour']} .. {evidence['last_hour']})")
    return rows


def run_decide(args) -> int:
    from klinecast.monitor.promotion_rule import PROMOTE, REJECT

    context = _Context(args)
    for symbol in context.symbols(args.symbol):
        pointer, decision = context.shadow(symbol)
        if pointer is None:
            print(f"challenger decide: {symbol}: no challenger in shadow")
            continue
        print(f"challenger decide: {symbol}: {pointer['version']}: {decision.action}: {decision.reason}")
        if decision.action in (PROMOTE, REJECT):
            reason = args.reason or f"the promotion rule: {decision.reason}"
            _apply(args, context, symbol, decision.action, reason, decision.evidence)
    return 0


def run_operator(args) -> int:
    from klinecast.errors import KlinecastError

    context = _Context(args)
    (symbol,) = context.symbols([args.symbol])
    pointer, decision = context.shadow(symbol)
    if pointer is None:
        raise KlinecastError(f"{symbol} has no challenger in shadow; nothing was changed")
    _apply(args, context, symbol, args.action, args.reason, decision.evidence)
    return 0


def _apply(args, context: _Context, symbol: str, action: str, reason: str, evidence: dict) -> None:
    """Promotes (registry, then the cluster pinned as deploy does) or rejects the symbol's
    challenger, recorded with the evidence; the shadow span counts as one more look."""
    from klinecast.cli.registry import move_and_pin
    from klinecast.release import registry

    name = context.book.model_name(symbol)
    by = decided_by(args)
    if evidence:
        looks = registry.record_look(
            context.store, symbol=symbol,
            span=f"{evidence['first_hour'][:10]} .. {evidence['last_hour'][:10]}",
            data_version=f"shadow of {evidence['version']}", code_version=registry.code_version(),
        )  # fmt: skip
        evidence = evidence | {"span_looks": looks}
    if action == "reject":
        gone = registry.end_challenger(context.store, name, by=by, reason=reason, evidence=evidence)
        print(f"challenger reject: {symbol}: {gone['version']} is shadowed no more ({by})")
        return

    def promote(store, model_name, **record):
        return registry.promote_challenger(store, model_name, evidence=evidence, **record)

    move_and_pin(
        context.book, symbol, context.registry_uri, promote, command="challenger promote", by=by,
        reason=reason, namespace=args.namespace,
    )  # fmt: skip
