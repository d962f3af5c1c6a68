"""dmsg: PK-addressed relay messaging (discovery entries, sessions, streams, dmsghttp)."""
