"""A local Confluent-compatible schema registry (Apicurio Registry, built from Maven Central)."""

from deploy.local.registry.build import REGISTRY_VERSION, RegistrySetupError, ensure_registry_app
from deploy.local.registry.server import RegistryServer

__all__ = ["REGISTRY_VERSION", "RegistryServer", "RegistrySetupError", "ensure_registry_app"]
