"""The KFP pipelines (training, hourly refresh) and their compiled YAML."""
