"""The local Azure twin the machine topology runs on: Entra ID issuer, ARM (compute, network,
container instances), IMDS and machines."""
