"""`klinecast registry migrate`: the registry's models under the book's names."""

from __future__ import annotations

from klinecast.cli.common import params_arg


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
    migrate.add_argument(
        "--registry",
        help="registry URI (default: publish.registry; $KLINECAST_REGISTRY overrides it)",
    )
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
