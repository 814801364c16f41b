"""Sandbox end-to-end: a package from the Debian archive through the proxy; a systemd unit enabled and started."""

from io import StringIO

from pyinfra.operations import apt, files, systemd

UNIT = """\
[Unit]
Description=pyinfra-iluvatar sandbox probe

[Service]
ExecStart=/bin/sleep infinity

[Install]
WantedBy=multi-user.target
"""

apt.packages(name="Install hello through the proxy", packages=["hello"], update=True)
files.put(name="Probe unit", src=StringIO(UNIT), dest="/etc/systemd/system/sandbox-probe.service")
systemd.service(
    name="Probe enabled and running",
    service="sandbox-probe.service",
    enabled=True,
    running=True,
    daemon_reload=True,
)
