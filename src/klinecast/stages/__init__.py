"""One typed function per stage: what `dvc repro` (through the CLI), the CLI and the Kubeflow
components all call.

A stage takes the book's params, the symbol it works on (where it works on one) and the paths
it reads and writes, and returns a typed result. Its adapters only parse, call and report:
`klinecast.cli` prints the result, the components of `klinecast.platform.kfp`
(`data_components`, `model_components`) log it as the task's metadata. So what one path can do, the others can.

    ingest -> candles (each symbol) -> features (each symbol, with the reference's candles)
    -> pool (the book) -> tune -> evaluate -> train -> publish -> report (each symbol)
    -> portfolio (the book)

The files a checkout keeps them in are `klinecast.book.Layout`'s.
"""
