#!/bin/bash
# Device check for facts/nvidia.py: real NvidiaGpus runs on a GPU host. Read-only; failure modes only in `unshare -m`.
D=$OUT/nv; mkdir -p $D; L=$D/log.txt
exec > >(tee -a $L) 2>&1
set -x
date -u; uname -a; nvidia-smi --version
python3 -m venv --system-site-packages /tmp/venv
/tmp/venv/bin/pip install -q --no-index --no-deps --no-compile .devcap/nvfacts/whl/*.whl
mkdir -p /tmp/pkg && ln -sfn "$PWD" /tmp/pkg/pyinfra_iluvatar
export PYTHONPATH=/tmp/pkg PATH=/tmp/venv/bin:$PATH
CMD=$(python3 -c 'from pyinfra_iluvatar.facts.nvidia import NvidiaGpus; print(NvidiaGpus().command())')
echo "$CMD" > $D/cmd.txt
bash -c "$CMD" > $D/ok.txt; cat $D/ok.txt
for f in NvidiaGpus NvidiaPersistenceMode; do pyinfra --json @local fact pyinfra_iluvatar.facts.nvidia.$f > $D/fact_$f.json 2>$D/fact_$f.err; echo rc=$?; cat $D/fact_$f.json; done
python3 -m pytest -q -p no:cacheprovider tests/test_facts_local.py -k nvidia 2>&1 | tail -5
# exit 6: our exact query for a GPU index the machine does not have
bash -c "${CMD/nvidia-smi /nvidia-smi -i 1 }" > $D/no_gpu_index1.txt; cat $D/no_gpu_index1.txt
# an empty /proc/driver/nvidia/gpus, private mount namespace only
unshare -m bash -c "mount -t tmpfs none /proc/driver/nvidia/gpus && $CMD" > $D/no_gpu_procfs.txt 2>&1; cat $D/no_gpu_procfs.txt
