"""Deploys for Ilúvatar hosts; each module also runs as a pyinfra deploy file."""
