"""Pieces every generated Kubernetes manifest uses: resources, and the non-root container."""

from __future__ import annotations

#: The uid every klinecast image runs as (USER 10001 in both Dockerfiles).
UID = 10001


def resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> dict:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


def restricted_security_context() -> dict:
    """Non-root, no privilege escalation, read-only root filesystem, no capabilities."""
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
