"""The namespace, the pipeline's identity, least-privilege RBAC and the model's NetworkPolicy."""

from __future__ import annotations

from klinecast.platform.k8s import NAMESPACE, secret_template, service_account
from klinecast.platform.names import POSTGRES_KEYS, POSTGRES_SECRET

PIPELINE_ACCOUNT = "klinecast-pipeline"
TRADER_ACCOUNT = "klinecast-trader"
TRADER_LABEL = {"app.kubernetes.io/component": "trader"}
#: Where a Serverless InferenceService's calls come from: Knative's activator and the mesh gateway.
KNATIVE_NAMESPACES = ("knative-serving", "istio-system")


def namespace(name: str = NAMESPACE) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "klinecast"}},
    }


def pipeline_service_account(namespace: str = NAMESPACE) -> dict:
    """What `klinecast pipeline submit` runs the pipeline's pods (and Katib's trials) as."""
    return service_account(PIPELINE_ACCOUNT, namespace=namespace)


def postgres_secret_template(namespace: str = NAMESPACE) -> dict:
    return secret_template(POSTGRES_SECRET, list(POSTGRES_KEYS.values()), namespace=namespace)


def pipeline_role(*, service_name: str, namespace: str = NAMESPACE, canary: bool = False) -> dict:
    """Deploy may read and patch this one InferenceService (and, for a canary, watch it: a
    watch by its name, which RBAC allows by resourceNames); the rest is what a KFP v2 pod needs.

    The KFP driver reads the kfp-launcher ConfigMap, and Argo's executor reports a step's
    outputs as WorkflowTaskResults. Nothing may list, create or delete InferenceServices.
    """
    verbs = ["get", "patch", "watch"] if canary else ["get", "patch"]
    rules = [
        _rule("serving.kserve.io", "inferenceservices", verbs, [service_name]),
        _rule("", "configmaps", ["get"], ["kfp-launcher"]),
        _rule("argoproj.io", "workflowtaskresults", ["create", "patch"]),
    ]
    return _role(PIPELINE_ACCOUNT, rules, namespace)


def trader_role(*, secrets: list[str], namespace: str = NAMESPACE) -> dict:
    """The trader may read its own Secrets by name, and nothing else."""
    return _role(TRADER_ACCOUNT, [_rule("", "secrets", ["get"], secrets)], namespace)


def role_binding(account: str, namespace: str = NAMESPACE) -> dict:
    """Binds the Role named like the service account to it."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": account, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }


def model_network_policy(
    *, service_name: str, namespace: str = NAMESPACE, serverless: bool = False
) -> dict:
    """Only the trader reaches the InferenceService's pods (and its transformer the predictor).

    In RawDeployment mode callers connect to the pods directly and a pod selector is the whole
    truth. In Serverless mode (a canary rollout) every call arrives from Knative's activator or
    the mesh's gateway, so their namespaces (KNATIVE_NAMESPACES) are admitted too: the trader
    still reaches the pods only through them.
    """
    model_pods = {"serving.kserve.io/inferenceservice": service_name}
    sources = [{"podSelector": {"matchLabels": TRADER_LABEL}}, {"podSelector": {"matchLabels": model_pods}}]
    if serverless:
        sources += [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
            for name in KNATIVE_NAMESPACES
        ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{service_name}-ingress", "namespace": namespace},
        "spec": {
            "podSelector": {"matchLabels": model_pods},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": sources,
                    "ports": [{"protocol": "TCP", "port": 8080}],
                }
            ],
        },
    }


def _role(name: str, rules: list[dict], namespace: str) -> dict:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _rule(group: str, resource: str, verbs: list[str], names: list[str] | None = None) -> dict:
    rule = {"apiGroups": [group], "resources": [resource], "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule
