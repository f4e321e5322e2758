//! Network boot: `build` writes what a network boot needs for each ref (the commit's kernel
//! and initramfs, the installer's live root, iPXE, PXELINUX and GRUB menus and programs) into
//! one directory; `slipway pxe serve` is made of `dhcp` (proxyDHCP beside a site's DHCP
//! server, full DHCP for an isolated lab, and the PXE boot server on UDP 4011), `tftp` (the
//! read-only TFTP server) and `http` (boot files, the OSTree repository, per-machine boot
//! scripts, kickstarts and installer reports). `cpio` writes the initramfs archives, `debian`
//! takes files out of Debian packages. `serve` runs the three servers over one build directory, with
//! `profiles` (which ref and kickstart a machine gets) and `state` (each machine's progress,
//! kept on disk).

pub mod build;
pub mod cpio;
pub mod debian;
pub mod dhcp;
pub mod http;
pub mod profiles;
pub mod serve;
pub mod state;
pub mod status;
pub mod tftp;
