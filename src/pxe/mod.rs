//! Network boot: `build` writes what a network boot needs for each ref (the commit's kernel
//! and initramfs, the installer's live root, iPXE, PXELINUX and GRUB menus and programs) into
//! one directory; `dhcp` is the DHCP side of `slipway pxe serve` (proxyDHCP beside a site's
//! DHCP server, full DHCP for an isolated lab, and the PXE boot server on UDP 4011). `cpio`
//! writes the initramfs archives, `debian` takes files out of Debian packages.

pub mod build;
pub mod cpio;
pub mod debian;
pub mod dhcp;
