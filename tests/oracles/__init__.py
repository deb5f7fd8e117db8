"""Plain reference implementations, written from the published descriptions, that tests compare our code with."""
