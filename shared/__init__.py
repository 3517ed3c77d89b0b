"""The batchai domain: resources, decisions, services, adapters, node agent and local stack."""
