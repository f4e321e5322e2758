//! Network boot for `slipway pxe serve`: the DHCP side (`dhcp`: proxyDHCP beside a site's DHCP
//! server, full DHCP for an isolated lab, and the PXE boot server on UDP 4011) and the HTTP
//! side (`http`: boot files, the OSTree repository, per-machine boot scripts, kickstarts and
//! installer reports).

pub mod dhcp;
pub mod http;
