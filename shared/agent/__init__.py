"""The node agent: runs on every node, takes assignments from its queue and runs job tasks."""
