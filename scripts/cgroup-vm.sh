#!/usr/bin/env bash
# Runs runtime/process's tests in a small virtual machine whose cgroup v2
# has the memory, cpu and pids controllers, with the test binary started
# in a delegated service cgroup as systemd makes one: what a machine whose
# controllers are bound to cgroup v1 (or a container) cannot show. Needs
# Debian's qemu-system-x86, busybox-static and a linux-image package:
#
#   apt-get install qemu-system-x86 busybox-static linux-image-cloud-amd64
#   scripts/cgroup-vm.sh [TEST-REGEXP]
#
# The machine boots the installed kernel with an initramfs holding
# busybox, the test binary and testdata/tiny, both built static. It is
# emulated (TCG), so it is slow, but it needs no KVM.
set -euo pipefail
cd "$(dirname "$0")/.."
kernel=$(ls /boot/vmlinuz-* | sort -V | tail -n1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,usr/bin,proc,sys,dev,tmp,etc,t}
cp /bin/busybox "$root/bin/"
for applet in sh sleep mount mkdir cat echo ls ip poweroff env grep sed uname; do
	ln -s busybox "$root/bin/$applet"
done
ln -s ../../bin/busybox "$root/usr/bin/sleep"
echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
CGO_ENABLED=0 go test -c -o "$root/t/process.test" ./runtime/process
CGO_ENABLED=0 go build -o "$root/t/tiny" ./runtime/process/testdata/tiny
cat >"$root/init" <<'INIT'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
echo "kernel $(uname -r); cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "+memory +cpu +pids" >/sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/svc
cd /t
tests=$(sed -n 's/.*tests=\([^ ]*\).*/\1/p' /proc/cmdline)
sh -c 'echo $$ >/sys/fs/cgroup/svc/cgroup.procs; exec env SPEAR_TEST_TINY=/t/tiny PATH=/bin:/usr/bin ./process.test -test.v -test.count=1 -test.run "$0"' "$tests" 2>&1 | grep -v '^=== '
echo "the service cgroup delegates: $(cat /sys/fs/cgroup/svc/cgroup.subtree_control)"
poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initrd.gz"
qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 4096 -smp 2 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$work/initrd.gz" \
	-append "console=ttyS0 quiet panic=-1 tests=${1:-}"
