"""Pinned, verified release artifacts: resolve versions once, write a lock file, read it in deploys."""
