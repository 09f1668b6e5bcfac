"""`klinecast registry migrate`: the registry's models under the book's names; `klinecast
rollback SYMBOL` and `klinecast promote SYMBOL VERSION`: an operator moves a symbol's
production, on the registry and the cluster."""

from __future__ import annotations

from klinecast.cli.common import decided_by, decision_args, params_arg, registry_arg


def add_registry(commands) -> None:
    parser = commands.add_parser(
        "registry",
        help="move published models to the names the book gives them",
        description=(
            "Models were once named publish.model_name alone for one symbol and "
            "<model_name>-<symbol> among several, so adding a symbol renamed them. Now each "
            "symbol's model is publish.model_name's pattern filled in (klinecast-{symbol}-"
            "{interval}). `migrate --old-name NAME` copies every version and the production "
            "pointer of each symbol's old name (as the old rule named it for this params file) "
            "to its new name, byte for byte, and leaves the old names as they were."
        ),
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    migrate = actions.add_parser("migrate", help="copy each symbol's model to its new name")
    params_arg(migrate)
    migrate.add_argument(
        "--old-name", required=True, help="publish.model_name as it was, e.g. klinecast-btcusdt-1h"
    )
    registry_arg(migrate)
    migrate.add_argument(
        "--take-production",
        action="store_true",
        help="where a new name already has another production version (a book that grew from "
        "one symbol: its era's model holds the name), point it at the old name's",
    )
    migrate.add_argument("--dry-run", action="store_true", help="say what would move; copy nothing")
    migrate.set_defaults(run=run_migrate)


def run_migrate(args) -> int:
    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.errors import KlinecastError
    from klinecast.release import registry

    book = Book(load_params(args.params))
    registry_uri = args.registry or book.params.publish.registry
    store = registry.open_store(registry_uri)
    refused = []
    for symbol in book.symbols:  # each on its own: one refusal stops none of the others
        old, new = book.legacy_model_name(args.old_name, symbol), book.model_name(symbol)
        if old == new or not registry.versions(store, old):
            print(f"registry migrate: {symbol}: nothing under {old} to move to {new}")
            continue
        if args.dry_run:
            print(f"registry migrate: {symbol}: would copy {old} -> {new}")
            continue
        try:
            done = registry.copy_model(store, old=old, new=new, take_production=args.take_production)
        except KlinecastError as exc:
            refused.append(symbol)
            print(f"registry migrate: {symbol}: {exc}")
            continue
        print(
            f"registry migrate: {symbol}: {old} -> {new}: {len(done.versions)} version(s) copied, "
            f"production {done.production or 'none'} ({registry_uri})"
        )
    if refused:
        raise KlinecastError(f"{', '.join(refused)} not migrated (see above); the others were")
    return 0


def add_rollback(commands) -> None:
    parser = commands.add_parser(
        "rollback",
        help="move a symbol's production back to its previous version (registry and cluster)",
        description=(
            "Point SYMBOL's production at the version it pointed at before the current one "
            "(a second rollback goes one further back), record the decision in the registry "
            "(who, when, from which version, why), then pin the book's InferenceService to the "
            "production versions as `klinecast deploy` does. Outside a cluster the registry "
            "moves and deploy says it skips; a server that follows the registry picks the "
            "version up within its poll period. Only SYMBOL's pointer moves."
        ),
    )
    parser.add_argument("symbol", help="one of data.symbols, e.g. BTCUSDT")
    _move_args(parser, default_reason="operator rollback")
    parser.set_defaults(run=run_rollback)


def add_promote(commands) -> None:
    parser = commands.add_parser(
        "promote",
        help="move a symbol's production to a version in the registry (registry and cluster)",
        description=(
            "An operator's promotion: point SYMBOL's production at VERSION, a version already "
            "in the registry (one its gate refused, or an earlier one), record the decision "
            "(who, when, from which version, why, the version's evaluation as evidence), then "
            "pin the book's InferenceService as `klinecast deploy` does. `klinecast rollback` "
            "undoes it."
        ),
    )
    parser.add_argument("symbol", help="one of data.symbols, e.g. BTCUSDT")
    parser.add_argument("version", help="a version in the registry, e.g. v20261205T041000-1f2e3d4c")
    _move_args(parser, default_reason="operator promotion")
    parser.set_defaults(run=run_promote)


def _move_args(parser, *, default_reason: str) -> None:
    params_arg(parser)
    registry_arg(parser)
    decision_args(parser, default_reason=default_reason)


def run_rollback(args) -> int:
    from klinecast.release import registry

    return _run_move(args, "rollback", registry.rollback)


def run_promote(args) -> int:
    from klinecast.release import registry

    def promote(store, name, **record):
        return registry.promote_version(store, name, args.version, **record)

    return _run_move(args, "promote", promote)


def _run_move(args, command: str, move) -> int:

    from klinecast.book import Book
    from klinecast.config import load_params
    from klinecast.errors import KlinecastError

    book = Book(load_params(args.params))
    symbol = args.symbol.upper()
    if symbol not in book.symbols:
        raise KlinecastError(f"{symbol} is not in the book ({', '.join(book.symbols)})")
    move_and_pin(
        book, symbol, args.registry or book.params.publish.registry, move, command=command,
        by=decided_by(args), reason=args.reason,
        namespace=args.namespace,
    )  # fmt: skip
    return 0


def move_and_pin(
    book, symbol: str, registry_uri: str, move, *, command: str, by: str, reason: str,
    namespace: str,
) -> dict:  # fmt: skip
    """Moves the symbol's production pointer with move(store, model_name, by=, reason=), then
    pins the cluster as deploy does; a refused patch says the registry moved already. Returns
    the new pointer."""
    from klinecast.errors import KlinecastError
    from klinecast.platform import deploy
    from klinecast.platform.canary import CanaryBreach
    from klinecast.release import registry

    store = registry.open_store(registry_uri)
    name = book.model_name(symbol)
    before = registry.production(store, name)
    pointer = move(store, name, by=by, reason=reason)
    was = before["version"] if before else "none"
    print(f"{command}: {symbol}: production {was} -> {pointer['version']} ({by})")
    try:
        _, done = deploy.deploy_book(book, registry_uri=registry_uri, namespace=namespace)
    except CanaryBreach as breach:
        raise KlinecastError(
            f"{breach}; production of {symbol} is back at {was} in the registry too"
        ) from breach
    except KlinecastError as exc:
        raise KlinecastError(
            f"the registry's production of {symbol} is {pointer['version']}, but the "
            f"cluster was not changed ({exc}); run `klinecast deploy` when it answers"
        ) from exc
    print(f"{command}: {done or deploy.NO_CLUSTER}")
    return pointer
