"""The doors into gradaudit from a terminal: the `gradaudit` command, its HTTP client, the embedded server and
the local audit. They sit beside api/ and worker/ and may use either; nothing imports them."""
