#!/bin/sh
# Runs once inside the new root file system (chroot), after debootstrap and the rootfs/ overlay.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
# cloud-init's locale module runs update-locale for en_US.UTF-8: generate it.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
locale-gen
update-locale LANG=en_US.UTF-8
# bindfs presents a share's cifs modes to every user (see /usr/sbin/mount.cifs). Installed by apt, not
# debootstrap: it depends on "fuse", which fuse3 provides, and debootstrap would pull in fuse 2 instead.
apt-get update -q && apt-get install -y -q --no-install-recommends bindfs
# The emulated storage (every share and export of the stack) is reached by root's mount helpers only:
# a job sees a share through its mount, never the others beside it.
install -d -m 0700 /mnt/emulator
# Every machine gets its own machine id at boot and its own ssh host keys from cloud-init.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log /tmp/*
