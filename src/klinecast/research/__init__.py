"""Research: features and labels, the trading rule, the purged walk-forward backtest
and its baselines, the statistics, the Optuna study, training and out-of-sample evaluation."""
