//! Network boot: what `slipway pxe serve` is made of (proxyDHCP, TFTP and HTTP in one
//! process). So far the TFTP server.

pub mod tftp;
