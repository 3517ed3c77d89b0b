"""Services: load, decide, apply. The only writers of each entity's state."""
