"""Jepsen-style consistency checking for `bazar chaos`: histories, a linearizability search, and the checker."""
