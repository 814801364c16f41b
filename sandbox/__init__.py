"""Disposable systemd hosts over SSH: rehearse deploys, and the end-to-end test bed."""
