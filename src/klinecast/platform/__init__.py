"""Platform: everything that writes or talks to Kubernetes, KFP, Katib and the
cluster (manifests, the pipelines' parameters and runs, deploys, retrain triggers)."""
