"""Serving: the HTTP API, its keys and metrics, and the search page."""
