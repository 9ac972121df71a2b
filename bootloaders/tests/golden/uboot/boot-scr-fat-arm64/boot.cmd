# migrd one-shot boot script (written by migrd; `migrd cancel` removes it).
# Boots the migration ramdisk once: the flag file is set to 0 and written
# back by U-Boot itself before the ramdisk is loaded, so any reset after
# this point boots the old OS. If the flag cannot be written, the ramdisk
# is not booted at all.
setenv migrd_oneshot
if load ${devtype} ${devnum}:${distro_bootpart} ${scriptaddr} /migrd/oneshot.txt; then
  env import -t ${scriptaddr} ${filesize} migrd_oneshot
fi
if test "${migrd_oneshot}" = "1"; then
  setenv migrd_oneshot 0
  env export -t ${scriptaddr} migrd_oneshot
  if fatwrite ${devtype} ${devnum}:${distro_bootpart} ${scriptaddr} /migrd/oneshot.txt ${filesize}; then
    echo "migrd: one-shot flag cleared; booting the migration ramdisk"
    if load ${devtype} ${devnum}:${distro_bootpart} ${kernel_addr_r} /migrd/kernel; then
      if load ${devtype} ${devnum}:${distro_bootpart} ${ramdisk_addr_r} /migrd/initramfs; then
        setenv bootargs "console=ttyAMA0 rootfstype=ramfs panic=10 migrd.plan=/migrd/plan.json"
        booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
      fi
    fi
    echo "migrd: could not boot the migration ramdisk; booting the old OS"
  else
    echo "migrd: could not clear the one-shot flag; booting the old OS"
  fi
fi
# Not the migration boot: run the board's own boot script.
if load ${devtype} ${devnum}:${distro_bootpart} ${scriptaddr} /migrd/original.scr; then
  source ${scriptaddr}
fi
