"""memoryd's harness: journal, pipeline, store, API, scheduler and CLI."""
