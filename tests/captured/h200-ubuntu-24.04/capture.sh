#!/bin/bash
# Read-only capture of real command output on the lent GPU machine, for fact fixtures.
# Nothing here changes GPU settings: only queries, and nvidia-smi run inside a private mount namespace.
D=$OUT/cap; mkdir -p $D
n=0
cap() { # name, command...
  n=$((n+1)); local f="$D/$(printf %02d $n)-$1.txt"; shift
  { echo "\$ $*"; bash -c "$*" 2>&1; echo "[exit=$?]"; } > "$f" 
}
cap uname 'uname -a; cat /etc/os-release; date -u'
cap smi_version 'nvidia-smi --version'
cap smi_plain 'nvidia-smi'
cap q_full_nounits 'nvidia-smi --query-gpu=index,uuid,name,driver_version,persistence_mode,memory.total,memory.used,compute_mode,mig.mode.current,pci.bus_id --format=csv,noheader,nounits'
cap q_full 'nvidia-smi --query-gpu=index,uuid,name,driver_version,persistence_mode,memory.total,memory.used,compute_mode,mig.mode.current,pci.bus_id --format=csv,noheader'
cap q_full_header 'nvidia-smi --query-gpu=index,uuid,name,driver_version,persistence_mode,memory.total,memory.used,compute_mode,mig.mode.current,pci.bus_id --format=csv'
cap q_persist 'nvidia-smi --format=csv,noheader --query-gpu=uuid,persistence_mode'
cap q_bad_field 'nvidia-smi --query-gpu=index,nosuchfield --format=csv,noheader'
cap smi_L 'nvidia-smi -L'
cap smi_q_head 'nvidia-smi -q | head -80'
cap which 'command -v nvidia-smi nvidia-ctk nvidia-container-cli nvidia-persistenced docker containerd ctr zpool zfs runc; ls -l /usr/bin/nvidia-smi; cat /proc/driver/nvidia/version'
cap modules 'grep -E "^nvidia|^zfs" /proc/modules'
cap ctk 'nvidia-ctk --version; nvidia-container-cli --version; ls -la /etc/nvidia-container-runtime /etc/containerd /etc/containerd/conf.d 2>&1'
cap persistenced 'nvidia-persistenced --version; ls -l /lib/systemd/system/nvidia-persistenced.service /usr/lib/systemd/system/nvidia-persistenced.service 2>&1; cat /lib/systemd/system/nvidia-persistenced.service 2>&1; ls -la /var/run/nvidia-persistenced 2>&1'
cap docker 'docker version; docker info --format "{{json .Runtimes}}"'
cap containerd 'containerd --version; ctr version; ctr plugins ls'
cap zfs 'zpool status; zpool list -H -o name,size,alloc,free,health; zfs version'
cap route 'ip -o -4 route show default; ip -o -6 route show default; ip -o link'
cap limits 'cat /etc/security/limits.conf | grep -v "^#" | grep -v "^$"; ls /etc/security/limits.d; ulimit -Hn; ulimit -Sn'
# Failure modes, each inside a private mount namespace so the host stays untouched.
LIB=$(ldconfig -p | awk '/libnvidia-ml.so.1 /{print $NF; exit}')
echo "libnvidia-ml: $LIB" > $D/lib.txt
cap nvml_missing "unshare -m bash -c 'for l in \$(ldconfig -p | awk \"/libnvidia-ml.so/{print \\\$NF}\"); do mount --bind /dev/null \$l; done; for l in /usr/lib/x86_64-linux-gnu/libnvidia-ml.so* /usr/local/nvidia/lib64/libnvidia-ml.so* /usr/lib64/libnvidia-ml.so*; do [ -e \$l ] && mount --bind /dev/null \$l; done; nvidia-smi --query-gpu=index,uuid,name,driver_version,persistence_mode,memory.total,memory.used,compute_mode,mig.mode.current,pci.bus_id --format=csv,noheader,nounits; echo rc=\$?'"
cap no_driver "unshare -m bash -c 'mount -t tmpfs none /proc/driver 2>&1; for d in /dev/nvidia*; do mount --bind /dev/null \$d 2>&1; done; nvidia-smi --query-gpu=index,uuid,name,driver_version,persistence_mode,memory.total,memory.used,compute_mode,mig.mode.current,pci.bus_id --format=csv,noheader,nounits; echo rc=\$?'"
cap no_driver_file "unshare -m bash -c 'touch /tmp/emptyfile; for d in /dev/nvidiactl /dev/nvidia0 /dev/nvidia-uvm /dev/nvidia-uvm-tools; do [ -e \$d ] && mount --bind /tmp/emptyfile \$d; done; nvidia-smi --format=csv,noheader --query-gpu=uuid,persistence_mode; echo rc=\$?'"
cap no_driver_tmpfsdev "unshare -m bash -c 'mount -t tmpfs none /dev; nvidia-smi --format=csv,noheader --query-gpu=uuid,persistence_mode; echo rc=\$?'"
cd $OUT && tar czf cap.tgz cap && rm -rf cap
