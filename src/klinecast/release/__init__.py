"""Release: the artifact's typed metadata, the gate, the model registry, publishing
and the report a person reads before trusting a model."""
