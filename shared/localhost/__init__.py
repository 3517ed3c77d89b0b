"""The local trigger host: serves function_app.py as Azure Functions would, on this machine."""
