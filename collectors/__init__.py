"""Collectors turn desktop activity into `Event`s. Nothing here imports `daemon`."""
