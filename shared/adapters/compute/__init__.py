"""Compute providers (local processes, VM scale sets, container instances) behind one port."""
