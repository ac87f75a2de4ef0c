"""A small pipeline written the luisy 1.4.7 way (docs + public surface), used unchanged."""
