"""Pure decisions: snapshot in, decision out. No I/O, no clock, no random ids."""
