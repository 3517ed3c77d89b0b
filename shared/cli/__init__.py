"""The batchai command line, built on the official azure-mgmt-batchai SDK."""
