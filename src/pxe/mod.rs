//! Network boot: `build` writes what a network boot needs for each ref (the commit's kernel
//! and initramfs, the installer's live root, iPXE, PXELINUX and GRUB menus and programs) into
//! one directory; `slipway pxe serve` is made of `dhcp` (proxyDHCP beside a site's DHCP
//! server, full DHCP for an isolated lab, and the PXE boot server on UDP 4011), `tftp` (the
//! read-only TFTP server) and `http` (boot files, the OSTree repository, per-machine boot
//! scripts, kickstarts and installer reports). `cpio` writes the initramfs archives, `debian`
//! takes files out of Debian packages.

pub mod build;
pub mod cpio;
pub mod debian;
pub mod dhcp;
pub mod http;
pub mod tftp;
