"""Domain: resources, enums, state machines and errors. Imports nothing from the other layers."""
