"""Binance archive download, checksum, parsing, validation and storage."""
