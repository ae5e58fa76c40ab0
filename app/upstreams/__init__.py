"""Clients for the upstreams the tools call: GitHub, Postgres and the webhook."""
