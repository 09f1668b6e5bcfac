"""Monitor: live health from the ledger (accuracy, equity, drift), the retrain
decision, and the monitor's page."""
