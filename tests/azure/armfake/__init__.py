"""A wire-level fake of Azure Resource Manager for tests of the Azure providers (test infrastructure)."""

from tests.azure.armfake.server import ArmFake, Reply, Request, StaticCredential

__all__ = ["ArmFake", "Reply", "Request", "StaticCredential"]
