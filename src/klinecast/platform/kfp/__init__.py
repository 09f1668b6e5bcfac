"""The Kubeflow Pipelines of klinecast: their components (thin adapters over klinecast.stages),
the training and refresh pipelines, their parameters, the compiled YAML (package data beside
this file) and the ways to run them (kfp.local here, a KFP API server there)."""
