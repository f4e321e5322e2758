//! Network boot: what `slipway pxe serve` is made of, in one process: the DHCP side (`dhcp`:
//! proxyDHCP beside a site's DHCP server, full DHCP for an isolated lab, and the PXE boot
//! server on UDP 4011) and the read-only TFTP server (`tftp`).

pub mod dhcp;
pub mod tftp;
