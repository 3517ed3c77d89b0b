#!/bin/sh
# Runs once inside the new root file system (chroot), after debootstrap and the rootfs/ overlay.
set -eu
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
# cloud-init's locale module runs update-locale for en_US.UTF-8: generate it.
sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
locale-gen
update-locale LANG=en_US.UTF-8
# Every machine gets its own machine id at boot and its own ssh host keys from cloud-init.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id /etc/ssh/ssh_host_*
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log /tmp/*
