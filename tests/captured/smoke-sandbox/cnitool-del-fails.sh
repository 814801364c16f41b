#!/bin/sh
# Test wrapper for cnitool (capture.sh scenario 15): `del` fails, so the smoke script's cleanup cannot release
# the namespace's address, and its check must report what is left.
case "$1" in
del)
    echo "cnitool del: failure simulated by capture.sh" >&2
    exit 1
    ;;
esac
exec /opt/cni/bin/cnitool.real "$@"
