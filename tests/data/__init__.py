"""Archive planning, parsing and validation, and `ingest` against a real HTTP server over
`../shared/binance-mirror` with injected faults (checksum mismatch, truncated or corrupt zip,
zero or two members, header rows, non-numeric cells, OHLC violations, duplicate and out-of-order
timestamps, HTTP 404/500, timeouts, truncated transfers, a month that does not exist yet).
"""

