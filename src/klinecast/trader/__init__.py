"""The hourly trader: market data, inference, brokers, the ledger and the cycle that ties them."""
