"""One interface over every model. Nothing here imports `daemon` or `collectors`."""
