//! Everything that writes into an OSTree sysroot, shared by `image`, the network installer
//! and the host lifecycle: the libostree deployment (`deploy`), GRUB configuration and
//! images (`bootloader`), the EFI system partition's boot files (`esp`), host configuration
//! from a kickstart (`hostconfig`), and account databases of a tree (`userdb`).

pub mod bootloader;
pub mod deploy;
pub mod disk;
pub mod esp;
pub mod hostconfig;
pub mod userdb;
