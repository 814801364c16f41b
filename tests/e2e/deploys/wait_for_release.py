"""Sandbox end-to-end: hold every host inside an operation until the test releases it, then finish."""

from pyinfra.operations import server

server.shell(
    name="Wait for the test's go-ahead",
    commands=[
        "touch /var/tmp/started && timeout 120 sh -c 'until [ -e /var/tmp/release ]; do sleep 0.1; done'",
    ],
)
server.shell(name="Finish", commands=["touch /var/tmp/finished"])
