"""Triggers only: parse the input, call one service, serialize the result."""
