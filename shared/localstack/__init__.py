"""The embedded local stack: Azurite, the trigger host, TLS, token and endpoint file."""
