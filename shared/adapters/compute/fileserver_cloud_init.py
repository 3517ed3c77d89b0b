"""The cloud-init user data of file server VMs: RAID 0 over the data disks (mdadm), ext4,
mounted at /data, exported over NFS to the private network. Pure: counts in, `#cloud-config` out."""

from __future__ import annotations

from typing import Any

from shared.adapters.compute.cloud_init import dump_cloud_config
from shared.adapters.compute.node_scripts import AGENT_DIR, file_entry


def render_file_server_cloud_init(disk_count: int, export_cidr: str = "10.0.0.0/8") -> str:
    """RAID 0 over the VM's `disk_count` data disks (LUN 0..n-1), ext4, /data, NFS export."""
    if disk_count < 1:
        raise ValueError("a file server needs at least one data disk")
    disks = " ".join(f"/dev/disk/azure/scsi1/lun{i}" for i in range(disk_count))
    script = f"""#!/bin/bash
# Builds /data over the data disks and exports it with NFS. Idempotent across reboots.
set -euo pipefail
for i in $(seq 1 120); do
  missing=0
  for d in {disks}; do [ -e "$d" ] || missing=1; done
  [ "$missing" = 0 ] && break
  sleep 2
done
if [ {disk_count} -gt 1 ]; then
  DEV=/dev/md0
  [ -e /dev/md0 ] || mdadm --create /dev/md0 --run --level=0 --raid-devices={disk_count} {disks}
  mdadm --detail --scan > /etc/mdadm/mdadm.conf
  update-initramfs -u
else
  DEV={disks}
fi
blkid "$DEV" >/dev/null 2>&1 || mkfs.ext4 -F "$DEV"
mkdir -p /data
grep -q ' /data ' /etc/fstab || echo "$DEV /data ext4 defaults,nofail,discard 0 2" >> /etc/fstab
mountpoint -q /data || mount /data
chmod 0777 /data
grep -q '^/data ' /etc/exports || echo "/data {export_cidr}(rw,sync,no_root_squash,no_subtree_check)" >> /etc/exports
systemctl enable --now nfs-kernel-server
exportfs -ra
"""
    doc: dict[str, Any] = {
        "package_update": True,
        "packages": ["mdadm", "nfs-kernel-server"],
        "write_files": [file_entry(f"{AGENT_DIR}/file-server.sh", script, "0755")],
        "runcmd": [[f"{AGENT_DIR}/file-server.sh"]],
    }
    return dump_cloud_config(doc)
