//! `slipway pxe serve`: DHCP (proxy, full or off), TFTP and HTTP in one process, over the
//! directory `pxe build` wrote, with per-machine profiles and install state.
//!
//! # Start
//!
//! Everything is checked before anything is served, and each mistake names its file or key:
//! DIR exists and has `manifest.json`; the server's address (`--server-ip`, else the IPv4
//! address of `--interface` from `ip -j -4 addr show dev IF`); the profiles file
//! ([`super::profiles`]: every ref built into DIR, every kickstart template renders to a
//! kickstart the installer accepts); the state directory (locked: one server per state
//! directory; machine records read back, [`super::state`]); then every socket is bound (a port
//! in use stops the start) and REPO is checked to be an archive repository.
//!
//! # `{{server}}`
//!
//! `pxe build` leaves `{{server}}` in the menus and scripts it writes. At start, the files of
//! DIR that have it (`boot.ipxe`, `refs/*/boot.ipxe`, `pxelinux.cfg/default`,
//! `grub/grub.cfg`) are written with `http://SERVER_IP:HTTP_PORT` filled in into
//! `STATE_DIR/run/overlay/` (emptied first), and both the TFTP and the HTTP server look there
//! before DIR (`TftpServer::with_overlay`, `http::ServeConfig::overlay_dir`). DIR itself is
//! never written. A `pxe build` into DIR while the server runs needs a restart of the server
//! to be seen in the filled menus.
//!
//! # Per machine
//!
//! `GET /boot.ipxe` without `mac=` (what the DHCP side names for iPXE clients) answers a script
//! that chains to `/boot.ipxe?mac=${netX/mac}&uuid=${uuid}&hostname=${hostname}`. With a
//! MAC it answers, for the machine's profile: the install script (the ref's kernel, initramfs
//! and live root with `?mac=` so the downloads count as the machine's progress, and the kernel
//! arguments `slipway.ks=SERVER/kickstart?mac=MAC slipway.report=SERVER/report`), or, when
//! the machine is recorded as installed and its profile does not say `reinstall`, a script
//! that boots the local disk: `sanboot --no-describe --drive 0x80` on BIOS, `exit 1` on UEFI (an error, so the firmware goes on to its next boot entry)
//! (the firmware goes on with its next boot entry, the disk). `GET /kickstart?mac=` renders
//! the profile's template, else the default kickstart `pxe build --kickstart` put into DIR.
//! `POST /report` records the installer's steps; `GET /status` shows every machine.
//!
//! The server runs until it is killed; every record is on disk when it changes, so nothing
//! is lost by a kill.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::build::{self, Manifest};
use super::dhcp::{self, DhcpMode};
use super::http::{self, Dynamic, HttpError, HttpEvent, Report, RequestFacts, Route};
use super::profiles::{Bootloader, Identity, Profile, Profiles, Template};
use super::state::{MachineState, Store};
use super::tftp::{self, TftpConfig, TransferEvent, TransferResult};
use crate::sys::cmd::CommandRunExt;
use crate::sys::ui;

/// What `slipway pxe serve` was asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `pxe build`'s output directory.
    pub dir: PathBuf,
    /// The OSTree archive repository, served at `/repo/`.
    pub repo: PathBuf,
    pub interface: Option<String>,
    pub dhcp: DhcpMode,
    /// Full mode's `A,B`.
    pub range: Option<String>,
    pub http_port: u16,
    pub tftp_port: u16,
    pub dhcp_port: u16,
    pub pxe_port: u16,
    /// Where DHCP replies go (68 and 255.255.255.255; tests use their own).
    pub dhcp_client_port: u16,
    pub dhcp_broadcast_ip: Ipv4Addr,
    pub profiles: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub server_ip: Option<Ipv4Addr>,
    /// Where HTTP and TFTP listen; `None`: the server's address.
    pub listen: Option<IpAddr>,
    /// The same routes over HTTPS too, the repository's URL (`{{repo}}`) then an https one.
    pub tls: Option<ServeTls>,
}

/// `--tls-cert`, `--tls-key`, `--https-port`.
#[derive(Debug, Clone)]
pub struct ServeTls {
    /// The server's certificate chain (PEM), its own first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    pub port: u16,
}

/// Files of DIR that `pxe build` leaves `{{server}}` in, besides each ref's `boot.ipxe`.
const MENUS: [&str; 3] = ["boot.ipxe", "pxelinux.cfg/default", "grub/grub.cfg"];

/// Serve until SIGTERM or SIGINT.
pub fn serve(opts: &ServeOptions) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(run(opts))
}

#[derive(Deserialize)]
struct IpAddrShow {
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    family: Option<String>,
    local: Option<String>,
}

/// The first IPv4 address of `interface`, read with `ip -j -4 addr show dev IF`.
pub fn interface_ipv4(interface: &str) -> Result<Option<Ipv4Addr>> {
    let shown: Vec<IpAddrShow> = Command::new("ip")
        .args(["-j", "-4", "addr", "show", "dev", interface])
        .run_and_parse_json()
        .with_context(|| format!("reading the addresses of interface {interface}"))?;
    Ok(parse_ip_addr_show(shown))
}

fn parse_ip_addr_show(shown: Vec<IpAddrShow>) -> Option<Ipv4Addr> {
    shown
        .into_iter()
        .flat_map(|s| s.addr_info)
        .filter(|a| a.family.as_deref().is_none_or(|f| f == "inet"))
        .find_map(|a| a.local.and_then(|l| l.parse().ok()))
}

fn server_ip(opts: &ServeOptions) -> Result<Ipv4Addr> {
    let from_interface = match &opts.interface {
        Some(i) => interface_ipv4(i)?.map(|ip| (i, ip)),
        None => None,
    };
    match (opts.server_ip, from_interface, &opts.interface) {
        (Some(ip), _, _) => Ok(ip),
        (None, Some((_, ip)), _) => Ok(ip),
        (None, None, Some(i)) => {
            bail!("interface {i} has no IPv4 address; give the server's address with --server-ip")
        }
        (None, None, None) => {
            bail!("the server's address is unknown: give --server-ip IP or --interface IF")
        }
    }
}

/// Write the files of `dir` that contain `{{server}}` with `server` filled in into
/// `overlay` (emptied first). Returns the paths written, relative.
pub fn write_overlay(
    dir: &Path,
    manifest: &Manifest,
    server: &str,
    overlay: &Path,
) -> Result<Vec<String>> {
    match std::fs::remove_dir_all(overlay) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("emptying {}", overlay.display())),
    }
    std::fs::create_dir_all(overlay).with_context(|| format!("creating {}", overlay.display()))?;
    let mut names: Vec<String> = MENUS.iter().map(|s| s.to_string()).collect();
    names.extend(
        manifest
            .refs
            .values()
            .map(|e| format!("{}/boot.ipxe", e.dir)),
    );
    let mut written = Vec::new();
    for name in names {
        let src = dir.join(&name);
        let text = match std::fs::read_to_string(&src) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", src.display())),
        };
        if !text.contains(build::SERVER_PLACEHOLDER) {
            continue;
        }
        crate::sys::file::write_atomic(
            &overlay.join(&name),
            build::fill_server(&text, server).as_bytes(),
        )?;
        written.push(name);
    }
    Ok(written)
}

/// The machines' side of the HTTP server: profiles, kickstarts, install state.
pub struct Site {
    profiles: Profiles,
    manifest: Manifest,
    /// `http://IP:PORT`.
    server: String,
    /// The repository's URL: `https://IP:PORT/repo` with TLS, else `{server}/repo`.
    repo_url: String,
    store: Arc<Store>,
    /// DIR's default kickstart per ref (`pxe build --kickstart`).
    default_kickstarts: BTreeMap<String, Template>,
    /// Where the per-MAC PXELINUX and GRUB configurations go (the TFTP overlay).
    overlay: PathBuf,
}

fn bad_request(msg: impl Into<String>) -> anyhow::Error {
    HttpError::bad_request(msg).into()
}

impl Site {
    /// Load what the routes need; errors name the file.
    pub fn new(
        dir: &Path,
        manifest: Manifest,
        profiles: Profiles,
        server: String,
        repo_url: String,
        store: Arc<Store>,
        overlay: PathBuf,
    ) -> Result<Self> {
        let mut default_kickstarts = BTreeMap::new();
        for (r, e) in &manifest.refs {
            if let Some(rel) = &e.kickstart {
                let path = dir.join(rel);
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the default kickstart {}", path.display()))?;
                let has_key = e.gpg_key_sha256.is_some();
                crate::kickstart::template::check(&text, &path.display().to_string(), r, has_key)?;
                default_kickstarts.insert(r.clone(), Template { path, text });
            }
        }
        Ok(Self {
            profiles,
            manifest,
            server,
            repo_url,
            store,
            default_kickstarts,
            overlay,
        })
    }

    /// The kernel arguments of `profile`'s installer for `mac`.
    fn kernel_args(&self, mac: &str, profile: &Profile) -> Result<(&build::RefEntry, Vec<String>)> {
        let e = self
            .manifest
            .refs
            .get(&profile.ostree_ref)
            .with_context(|| format!("ref {} is not in the manifest", profile.ostree_ref))?;
        let mut args = e.kernel_args.clone();
        args.extend(profile.kernel_args.iter().cloned());
        args.push(format!(
            "slipway.ks={}",
            self.url(&format!("kickstart?mac={mac}"))
        ));
        args.push(format!("slipway.report={}", self.url("report")));
        Ok((e, args))
    }

    /// Write (or remove) the per-MAC configurations of PXELINUX
    /// (`pxelinux.cfg/01-52-54-00-12-34-56`) and GRUB (`grub/grub.cfg-01-52-54-00-12-34-56`,
    /// which GRUB looks for before `grub.cfg` when its prefix is on TFTP) for `mac`, when its
    /// profile's `bootloader` is `pxelinux` or `grub`: the install, or the local disk once
    /// it is installed (unless `reinstall`).
    pub fn write_loader_config(&self, mac: &str) -> Result<()> {
        let dashed = mac.replace(':', "-");
        let pxelinux = self.overlay.join(format!("pxelinux.cfg/01-{dashed}"));
        let grub = self.overlay.join(format!("grub/grub.cfg-01-{dashed}"));
        for p in [&pxelinux, &grub] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
            }
        }
        let state = self.store.get(mac);
        let id = self.profiles.identify(
            Some(mac),
            state.as_ref().and_then(|m| m.uuid.as_deref()),
            state.as_ref().and_then(|m| m.hostname.as_deref()),
        );
        let Ok(Some(profile)) = self.profiles.choose(&id) else {
            return Ok(());
        };
        let local = state.is_some_and(|m| m.installed) && !profile.reinstall;
        let (e, args) = self.kernel_args(mac, profile)?;
        let head = format!(
            "# slipway: {mac}, profile {}, written by `slipway pxe serve`.\n",
            profile.name
        );
        // GRUB's TFTP and HTTP are slow: when the ref has netroot.img, GRUB loads that small
        // initrd and the initramfs fetches rootfs.img from this server's HTTP
        // (`pxe/live/net-root.sh`; busybox's wget speaks plain HTTP only).
        let (second, net_args) =
            if e.files.contains_key(build::NETROOT_IMG) && self.server.starts_with("http://") {
                (
                    build::NETROOT_IMG,
                    vec![
                        format!("slipway.rootfs={}", self.ref_file_url(e, "rootfs.img", mac)),
                        format!("slipway.netif={mac}"),
                    ],
                )
            } else {
                ("rootfs.img", Vec::new())
            };
        let (path, text) = match (profile.bootloader, local) {
            (Bootloader::Ipxe, _) => return Ok(()),
            (Bootloader::Pxelinux, true) => (
                pxelinux,
                format!("{head}DEFAULT local\nLABEL local\n  LOCALBOOT 0\n"),
            ),
            (Bootloader::Pxelinux, false) => (
                pxelinux,
                format!(
                    "{head}DEFAULT install\nLABEL install\n  KERNEL {d}/vmlinuz\n  INITRD {d}/initramfs.img,{d}/rootfs.img\n  APPEND {}\n",
                    args.join(" "),
                    d = e.dir
                ),
            ),
            (Bootloader::Grub, true) if profile.secure_boot => (
                grub,
                // Under shim, GRUB's exit status does not reach the firmware (OVMF then opens
                // its boot menu): start the disk's own shim, which the firmware's keys check.
                format!(
                    "{head}echo 'slipway: installed; booting from the local disk (its shim)'\n\
                     search --no-floppy --label {label} --set=root\n\
                     chainloader /EFI/BOOT/BOOTX64.EFI\n\
                     boot\n\
                     exit 1\n",
                    label = crate::sysroot::bootloader::ESP_LABEL
                ),
            ),
            (Bootloader::Grub, true) => (
                grub,
                // A non-zero status: firmware goes on to its next boot entry (EFI_SUCCESS
                // would send OVMF, and any firmware following the UEFI spec, to its boot menu).
                format!("{head}echo 'slipway: installed; booting from the local disk'\nexit 1\n"),
            ),
            (Bootloader::Grub, false) => (
                grub,
                format!(
                    "{head}set timeout=0\nset default=0\nmenuentry 'slipway: install {r}' {{\n    linux {root}/{d}/vmlinuz {}\n    initrd {root}/{d}/initramfs.img {root}/{d}/{second}\n}}\n",
                    args.iter()
                        .chain(&net_args)
                        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
                        .collect::<Vec<_>>()
                        .join(" "),
                    r = profile.ostree_ref,
                    d = e.dir,
                    // Debian's signed network GRUB (Secure Boot) has no `http` module, and
                    // under shim's lockdown loads none: TFTP then.
                    root = if profile.secure_boot {
                        None
                    } else {
                        grub_http_root(&self.server)
                    }
                    .unwrap_or_default(),
                ),
            ),
        };
        crate::sys::file::write_atomic(&path, text.as_bytes())
    }

    /// Which UEFI machines DHCP answers with their ref's signed shim: the known machines
    /// (`machines` entries and profiles matching a MAC) whose profile says `secure-boot`,
    /// and everybody else when the default profile does.
    pub fn secure_boot_programs(&self) -> dhcp::SecureBootPrograms {
        let shim = |p: &Profile| -> Option<String> {
            if !p.secure_boot {
                return None;
            }
            let e = self.manifest.refs.get(&p.ostree_ref)?;
            Some(format!("{}/{}", e.dir, build::SB_SHIM))
        };
        let mut macs: Vec<String> = self
            .profiles
            .machines
            .iter()
            .filter_map(|m| m.mac.clone())
            .collect();
        macs.extend(
            self.profiles
                .profiles
                .iter()
                .filter_map(|p| p.matcher.mac.clone()),
        );
        let by_mac = macs
            .into_iter()
            .filter_map(|mac| {
                let id = self.profiles.identify(Some(&mac), None, None);
                let p = self.profiles.choose(&id).ok()??;
                Some((mac, shim(p)))
            })
            .collect();
        dhcp::SecureBootPrograms {
            by_mac,
            default: self.profiles.default.as_ref().and_then(shim),
        }
    }

    /// A machine fetched its loader configuration (GRUB or PXELINUX, by TFTP): what
    /// [`Self::write_loader_config`] wrote for it, its install or its local disk.
    pub fn loader_config_fetched(&self, mac: &str, path: &str) -> Result<()> {
        let id = self.profiles.identify(Some(mac), None, None);
        let reinstall = matches!(self.profiles.choose(&id), Ok(Some(p)) if p.reinstall);
        self.store
            .update(mac, &format!("loader configuration {path} fetched"), |m| {
                let local = m.installed && !reinstall;
                m.step = "script".into();
                m.result = if local { "local-boot" } else { "served" }.into();
            })
            .map(|_| ())
    }

    /// The machine of a request and its profile. What the request does not say (the
    /// installer asks for its kickstart with `mac=` only) comes from the machine's record: the
    /// UUID and host name iPXE sent for its boot script, so both requests match one profile.
    fn profile(&self, facts: &RequestFacts) -> Result<(String, &Profile, Identity)> {
        let mac = facts
            .mac
            .clone()
            .ok_or_else(|| bad_request("this route needs ?mac=MAC"))?;
        let known = self.store.get(&mac);
        let uuid = facts
            .uuid
            .clone()
            .or_else(|| known.as_ref().and_then(|m| m.uuid.clone()));
        let hostname = facts
            .hostname
            .clone()
            .or_else(|| known.as_ref().and_then(|m| m.hostname.clone()));
        let id = self
            .profiles
            .identify(Some(&mac), uuid.as_deref(), hostname.as_deref());
        let profile = self
            .profiles
            .choose(&id)
            .map_err(|e| anyhow::Error::from(HttpError::new(409, format!("{mac}: {e}"))))?
            .ok_or_else(|| {
                anyhow::Error::from(HttpError::not_found(format!(
                    "no profile matches {mac} and there is no default profile"
                )))
            })?;
        Ok((mac, profile, id))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.server)
    }

    /// The URL of the ref's file `name` for `mac` (`?mac=`: the download is the machine's
    /// step).
    fn ref_file_url(&self, e: &build::RefEntry, name: &str, mac: &str) -> String {
        self.url(&format!("{}/{name}?mac={mac}", e.dir))
    }

    /// The install script of `profile` for `mac`.
    pub fn install_script(&self, mac: &str, profile: &Profile) -> Result<String> {
        let (e, args) = self.kernel_args(mac, profile)?;
        let file = |name: &str| self.ref_file_url(e, name, mac);
        Ok(format!(
            "#!ipxe\n\
             # slipway: install {r} on {mac} (profile {p}), written by `slipway pxe serve`.\n\
             echo slipway: installing {r} on {mac} (profile {p})\n\
             kernel --name vmlinuz {kernel} initrd=initramfs.img initrd=rootfs.img {args} || goto failed\n\
             initrd --name initramfs.img {initramfs} || goto failed\n\
             initrd --name rootfs.img {rootfs} || goto failed\n\
             boot || goto failed\n\
             \n\
             :failed\n\
             echo slipway: the installer did not start; rebooting in 10 seconds\n\
             sleep 10\n\
             reboot\n",
            r = profile.ostree_ref,
            p = profile.name,
            kernel = file("vmlinuz"),
            initramfs = file("initramfs.img"),
            rootfs = file("rootfs.img"),
            args = args.join(" "),
        ))
    }

    /// The script that boots an installed machine from its disk.
    pub fn local_boot_script(mac: &str, profile: &Profile) -> String {
        format!(
            "#!ipxe\n\
             # slipway: {mac} is installed (profile {p}); boot from the local disk, written by\n\
             # `slipway pxe serve`. UEFI: leave iPXE with an error, so that the firmware tries\n\
             # its next boot entry (after a success, UEFI firmware shows its boot menu).\n\
             echo slipway: {mac} is installed; booting from the local disk\n\
             iseq ${{platform}} efi && goto uefi ||\n\
             sanboot --no-describe --drive 0x80 ||\n\
             :uefi\n\
             exit 1\n",
            p = profile.name
        )
    }

    fn record_profile(&self, m: &mut MachineState, facts: &RequestFacts, profile: &Profile) {
        m.profile = Some(profile.name.clone());
        m.ostree_ref = Some(profile.ostree_ref.clone());
        m.ip = Some(facts.peer.ip().to_string());
        if facts.uuid.is_some() {
            m.uuid = facts.uuid.clone();
        }
    }
}

/// The host name of a machine nobody named: `slipway-` and its MAC's hex digits.
pub fn default_hostname(mac: &str) -> String {
    format!("slipway-{}", mac.replace(':', ""))
}

impl Dynamic for Site {
    fn boot_script(&self, facts: &RequestFacts) -> Result<String> {
        if facts.mac.is_none() {
            return Ok(format!(
                "#!ipxe\n\
                 # slipway: ask again with this machine's facts.\n\
                 chain {}/boot.ipxe?mac=${{netX/mac}}&uuid=${{uuid}}&hostname=${{hostname}}\n",
                self.server
            ));
        }
        let (mac, profile, id) = self.profile(facts)?;
        let hostname = id.hostname;
        let installed = self.store.get(&mac).is_some_and(|m| m.installed);
        if installed && !profile.reinstall {
            self.store
                .update(&mac, "boot script: local disk (installed)", |m| {
                    self.record_profile(m, facts, profile);
                    m.hostname = hostname.clone();
                    m.step = "script".into();
                    m.result = "local-boot".into();
                })?;
            return Ok(Self::local_boot_script(&mac, profile));
        }
        let script = self.install_script(&mac, profile)?;
        self.store.update(
            &mac,
            &format!(
                "boot script served (profile {}, ref {})",
                profile.name, profile.ostree_ref
            ),
            |m| {
                self.record_profile(m, facts, profile);
                m.hostname = hostname.clone();
                m.step = "script".into();
                m.result = "served".into();
            },
        )?;
        Ok(script)
    }

    fn kickstart(&self, facts: &RequestFacts) -> Result<String> {
        let (mac, profile, id) = self.profile(facts)?;
        let hostname = id.hostname;
        let template = profile
            .kickstart
            .as_ref()
            .or_else(|| self.default_kickstarts.get(&profile.ostree_ref))
            .ok_or_else(|| {
                anyhow::Error::from(HttpError::not_found(format!(
                    "no kickstart for {mac}: profile {} has none, and `pxe build` got no --kickstart for {}",
                    profile.name, profile.ostree_ref
                )))
            })?;
        let hostname = hostname.unwrap_or_else(|| default_hostname(&mac));
        let values = BTreeMap::from([
            ("mac", mac.clone()),
            ("uuid", id.uuid.unwrap_or_default()),
            ("hostname", hostname.clone()),
            ("ip", facts.peer.ip().to_string()),
            ("server", self.server.clone()),
            ("repo", self.repo_url.clone()),
            ("ref", profile.ostree_ref.clone()),
        ]);
        let text = crate::kickstart::template::render(
            &template.text,
            &template.path.display().to_string(),
            &values,
        )?;
        self.store.update(
            &mac,
            &format!("kickstart served ({})", template.path.display()),
            |m| {
                self.record_profile(m, facts, profile);
                m.hostname = Some(hostname);
                m.step = "kickstart".into();
                m.result = "served".into();
            },
        )?;
        Ok(text)
    }

    fn report(&self, facts: &RequestFacts, report: Report) -> Result<()> {
        let mut what = format!("{} {}", report.step, report.result);
        if let Some(e) = &report.error {
            what.push_str(&format!(": {e}"));
        }
        // A machine seen only through reports (PXELINUX, GRUB: no boot script) gets its
        // profile, ref and host name here.
        let known = self.store.get(&report.mac);
        let id = self.profiles.identify(
            Some(&report.mac),
            report
                .uuid
                .as_deref()
                .or(known.as_ref().and_then(|m| m.uuid.as_deref())),
            known.as_ref().and_then(|m| m.hostname.as_deref()),
        );
        let profile = self.profiles.choose(&id).ok().flatten();
        self.store.update(&report.mac, &what, |m| {
            if m.profile.is_none()
                && let Some(p) = profile
            {
                m.profile = Some(p.name.clone());
                m.ostree_ref = Some(p.ostree_ref.clone());
            }
            if m.hostname.is_none() {
                m.hostname = id.hostname.clone();
            }
            m.step = report.step.clone();
            m.result = report.result.clone();
            m.error = report.error.clone();
            m.ip = Some(facts.peer.ip().to_string());
            if report.uuid.is_some() {
                m.uuid = report.uuid.clone();
            }
            match report.step.as_str() {
                "install-start" => m.installed = false,
                "install-result" => m.installed = report.result == "ok",
                _ => {}
            }
        })?;
        self.write_loader_config(&report.mac)
    }

    /// Every machine with a record, then the `machines` entries (with a MAC) that never
    /// booted from this server (status `new`).
    fn status(&self) -> serde_json::Value {
        let all = self.store.all();
        let mut machines: Vec<serde_json::Value> = all
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("status".into(), m.summary().into());
                    o.insert(
                        "updated-utc".into(),
                        crate::sys::time::utc(m.updated).into(),
                    );
                }
                v
            })
            .collect();
        for entry in &self.profiles.machines {
            let Some(mac) = &entry.mac else { continue };
            if all.iter().any(|m| &m.mac == mac) {
                continue;
            }
            let id = self
                .profiles
                .identify(Some(mac), entry.uuid.as_deref(), None);
            let profile = self.profiles.choose(&id).ok().flatten();
            machines.push(serde_json::json!({
                "mac": mac,
                "uuid": entry.uuid,
                "hostname": entry.hostname,
                "profile": profile.map(|p| &p.name),
                "ref": profile.map(|p| &p.ostree_ref),
                "step": "",
                "result": "",
                "error": null,
                "installed": false,
                "status": "new",
                "updated-utc": null,
            }));
        }
        serde_json::json!({
            "schema": 1,
            "server": self.server,
            "repo": self.repo_url,
            "machines": machines,
        })
    }
}

/// The MAC a per-machine loader configuration is for (`grub/grub.cfg-01-52-54-00-12-34-56`,
/// `pxelinux.cfg/01-52-54-00-12-34-56`).
fn loader_config_mac(path: &str) -> Option<String> {
    let dashed = path
        .strip_prefix("grub/grub.cfg-01-")
        .or_else(|| path.strip_prefix("pxelinux.cfg/01-"))?;
    super::http::normalize_mac(dashed)
}

/// GRUB's name for the HTTP server at `server` (`http://HOST:PORT/PREFIX` becomes
/// `(http,HOST:PORT)/PREFIX`), from which a GRUB machine (slipway's `grubnetx64.efi`, built
/// with `http`; not Debian's signed one) loads its kernel and initrds: GRUB's
/// TFTP waits for each block's acknowledgement before the next, which took about 55 s for
/// the live root under TCG. `None` (TFTP, the root GRUB came from) for `https://`, which GRUB
/// cannot speak, and for hosts GRUB's device syntax cannot hold (IPv6 literals).
fn grub_http_root(server: &str) -> Option<String> {
    let rest = server.strip_prefix("http://")?;
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() || host.contains(['[', ']', ',', ')', '(', '\'', ' ']) {
        return None;
    }
    let prefix = prefix.trim_end_matches('/');
    Some(if prefix.is_empty() {
        format!("(http,{host})")
    } else {
        format!("(http,{host})/{prefix}")
    })
}

/// Which step a delivered file is: `(step, what)`.
fn file_step(
    file: &str,
    boot_programs: &BTreeMap<String, build::BootProgram>,
) -> Option<(&'static str, &'static str)> {
    let name = file.rsplit('/').next().unwrap_or(file);
    match name {
        "vmlinuz" => Some(("kernel", "kernel fetched")),
        "initramfs.img" => Some(("initramfs", "initramfs fetched")),
        "rootfs.img" => Some(("initramfs", "live root fetched")),
        build::NETROOT_IMG => Some(("initramfs", "network initrd fetched")),
        build::SB_SHIM | build::SB_GRUB => Some(("boot-program", "signed boot program fetched")),
        _ if boot_programs.contains_key(file) || file == build::GRUB_NETBOOT => {
            Some(("boot-program", "boot program fetched"))
        }
        _ => None,
    }
}

/// Which MAC an address belongs to, learned from HTTP requests with `mac=` and full mode's
/// leases: TFTP requests carry no MAC.
type IpMap = Arc<Mutex<BTreeMap<IpAddr, String>>>;

/// What `pxe serve` has checked and opened before it binds a socket: the boot directory's
/// manifest, the server address, the profiles, the locked state directory and its store, the
/// overlay with `{{server}}` filled in, and the per-MAC loader configurations.
struct Opened {
    server_ip: Ipv4Addr,
    server: String,
    /// Where HTTP and TFTP listen.
    listen: IpAddr,
    http_port: u16,
    _lock: crate::sys::lock::LockGuard,
    store: Arc<Store>,
    overlay: PathBuf,
    filled: Vec<String>,
    boot_programs: BTreeMap<String, build::BootProgram>,
    site: Arc<Site>,
}

/// `server_ip` is the server's address, `http_port` the port HTTP is bound to.
/// `repo_url`: the repository's URL as kickstarts get it.
fn open(
    opts: &ServeOptions,
    server_ip: Ipv4Addr,
    http_port: u16,
    repo_url: String,
) -> Result<Opened> {
    if !opts.dir.is_dir() {
        bail!(
            "the boot directory {} does not exist (write it with `slipway pxe build -o {}`)",
            opts.dir.display(),
            opts.dir.display()
        );
    }
    let manifest = build::read_manifest(&opts.dir)?.with_context(|| {
        format!(
            "{} has no {}: not a directory `slipway pxe build` wrote",
            opts.dir.display(),
            build::MANIFEST
        )
    })?;
    if opts.range.is_some() && opts.dhcp != DhcpMode::Full {
        bail!("--range is for --dhcp full (this is --dhcp {})", opts.dhcp);
    }
    let server = format!("http://{server_ip}:{http_port}");
    let profiles = match &opts.profiles {
        Some(p) => Profiles::load(p, &manifest)?,
        None => Profiles::builtin(&manifest)?,
    };
    std::fs::create_dir_all(&opts.state_dir)
        .with_context(|| format!("creating the state directory {}", opts.state_dir.display()))?;
    let lock = crate::sys::lock::exclusive(
        &opts.state_dir.join("serve.lock"),
        &format!("the state directory {}", opts.state_dir.display()),
        crate::sys::lock::Wait::NoWait,
    )?;
    let store = Arc::new(Store::load(&opts.state_dir)?);
    let overlay = opts.state_dir.join("run/overlay");
    let filled = write_overlay(&opts.dir, &manifest, &server, &overlay)?;
    let boot_programs = manifest.boot_programs.clone();
    let site = Arc::new(Site::new(
        &opts.dir,
        manifest,
        profiles,
        server.clone(),
        repo_url,
        store.clone(),
        overlay.clone(),
    )?);
    let mut known: Vec<String> = site
        .profiles
        .machines
        .iter()
        .filter_map(|m| m.mac.clone())
        .collect();
    known.extend(store.all().into_iter().map(|m| m.mac));
    known.sort();
    known.dedup();
    for mac in &known {
        site.write_loader_config(mac)?;
    }
    Ok(Opened {
        server_ip,
        server,
        listen: opts.listen.unwrap_or(IpAddr::V4(server_ip)),
        http_port,
        _lock: lock,
        store,
        overlay,
        filled,
        boot_programs,
        site,
    })
}

/// The TFTP server over the boot directory and the overlay; each complete transfer of a
/// kernel, initramfs or boot program is a step of the machine that asked (by address).
async fn bind_tftp(opts: &ServeOptions, o: &Opened, ip_map: &IpMap) -> Result<tftp::TftpServer> {
    let tftp_store = o.store.clone();
    let tftp_map = ip_map.clone();
    let tftp_programs = o.boot_programs.clone();
    let tftp_site = o.site.clone();
    let overlay = &o.overlay;
    let server = tftp::TftpServer::bind(
        SocketAddr::new(o.listen, opts.tftp_port),
        &opts.dir,
        TftpConfig::default(),
    )
    .await?
    .with_overlay(overlay)?
    .on_event(move |e: &TransferEvent| {
        tftp::log_event(e);
        if e.result != TransferResult::Complete {
            return;
        }
        let mac = tftp_map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&e.peer.ip())
            .cloned();
        let path = e.path.trim_start_matches('/').replace('\\', "/");
        if let Some(mac) = loader_config_mac(&path) {
            let site = tftp_site.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = site.loader_config_fetched(&mac, &path) {
                    ui::warn(format!("pxe: {e:#}"));
                }
            });
            return;
        }
        if let (Some(mac), Some((step, what))) = (mac, file_step(&path, &tftp_programs)) {
            let store = tftp_store.clone();
            let what = format!("{what} by TFTP ({path})");
            tokio::task::spawn_blocking(move || {
                if let Err(e) = store.step(&mac, step, "fetched", &what) {
                    ui::warn(format!("pxe: {e:#}"));
                }
            });
        }
    });
    Ok(server)
}

/// The DHCP server (`None` with `--dhcp off`); each offer and acknowledgement is a step of
/// the machine, and full mode's addresses name machines for TFTP.
fn bind_dhcp(opts: &ServeOptions, o: &Opened, ip_map: &IpMap) -> Result<Option<dhcp::Server>> {
    if opts.dhcp == DhcpMode::Off {
        return Ok(None);
    }
    let (server_ip, store) = (o.server_ip, &o.store);
    let mut rc = dhcp::ResponderConfig::new(server_ip, o.http_port);
    rc.secure_boot = o.site.secure_boot_programs();
    rc.mode = opts.dhcp;
    let sb = &rc.secure_boot;
    if opts.dhcp == DhcpMode::Proxy
        && (sb.default.is_some() || sb.by_mac.values().any(Option::is_some))
    {
        ui::info(format!(
            "pxe: Secure Boot profiles: Debian's signed GRUB asks the next server the site's DHCP names (siaddr) for its files, not this proxy; have the site's DHCP name {server_ip} for those machines (no boot file), or use --dhcp full"
        ));
    }
    rc.client_port = opts.dhcp_client_port;
    rc.broadcast_ip = opts.dhcp_broadcast_ip;
    if let Some(r) = &opts.range {
        rc.pool = Some(dhcp::AddressPool::from_range(r)?);
    }
    let mut cfg = dhcp::ServeConfig::new(rc);
    cfg.interface = opts.interface.clone();
    cfg.dhcp_port = opts.dhcp_port;
    cfg.pxe_port = opts.pxe_port;
    cfg.lease_file = Some(opts.state_dir.join(dhcp::LEASE_FILE));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<dhcp::BootEvent>();
    cfg.events = Some(tx);
    let server = dhcp::Server::bind(cfg)?;
    let store = store.clone();
    let map = ip_map.clone();
    std::thread::spawn(move || {
        while let Some(e) = rx.blocking_recv() {
            if let Some(a) = e.address {
                map.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(IpAddr::V4(a), e.facts.mac.clone());
            }
            let (step, what) = if e.kind == dhcproto::v4::MessageType::Offer {
                ("dhcp", format!("DHCP offer: boot program {}", e.program))
            } else {
                (
                    "boot-program",
                    format!("boot program {} acknowledged", e.program),
                )
            };
            let r = store.update(&e.facts.mac, &what, |m| {
                m.step = step.into();
                m.result = "offered".into();
                if e.facts.uuid.is_some() {
                    m.uuid = e.facts.uuid.clone();
                }
                if let Some(a) = e.address {
                    m.ip = Some(a.to_string());
                }
            });
            if let Err(e) = r {
                ui::warn(format!("pxe: {e:#}"));
            }
        }
    });
    Ok(Some(server))
}

/// Each boot file delivered by HTTP is a step of the machine that asked (by `mac=`), and its
/// address is remembered for TFTP.
fn follow_http_events(
    mut http_rx: tokio::sync::mpsc::UnboundedReceiver<HttpEvent>,
    o: &Opened,
    ip_map: &IpMap,
) {
    let boot_programs = o.boot_programs.clone();
    let store = o.store.clone();
    let map = ip_map.clone();
    std::thread::spawn(move || {
        while let Some(e) = http_rx.blocking_recv() {
            let Some(mac) = e.facts.mac.clone() else {
                continue;
            };
            map.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(e.facts.peer.ip(), mac.clone());
            if e.route != Some(Route::BootFile) || e.method != "GET" {
                continue;
            }
            let Some(file) = e.delivered_file() else {
                continue;
            };
            if let Some((step, what)) = file_step(file, &boot_programs)
                && let Err(e) = store.step(&mac, step, "fetched", what)
            {
                ui::warn(format!("pxe: {e:#}"));
            }
        }
    });
}

/// A server's run, or never done when there is no such server.
async fn run_if_there<T>(run: Option<impl std::future::Future<Output = T>>) -> T {
    match run {
        Some(r) => r.await,
        None => std::future::pending().await,
    }
}

async fn run(opts: &ServeOptions) -> Result<()> {
    // HTTP's socket first: the boot scripts name the port it got (`--http-port 0`).
    let server_ip = server_ip(opts)?;
    let listen = opts.listen.unwrap_or(IpAddr::V4(server_ip));
    let http_addr = SocketAddr::new(listen, opts.http_port);
    let listener = http::listen(http_addr)?;
    let http_port = listener
        .local_addr()
        .with_context(|| format!("reading the address of HTTP {http_addr}"))?
        .port();
    // HTTPS beside it, when asked: the certificate and key checked, its socket bound.
    let https = match &opts.tls {
        Some(t) => {
            let acceptor = http::tls::acceptor(&t.cert, &t.key)?;
            let addr = SocketAddr::new(listen, t.port);
            let l = http::listen(addr)?;
            let port = l
                .local_addr()
                .with_context(|| format!("reading the address of HTTPS {addr}"))?
                .port();
            Some((acceptor, l, port))
        }
        None => None,
    };
    let repo_url = match &https {
        Some((_, _, port)) => format!("https://{server_ip}:{port}/repo"),
        None => format!("http://{server_ip}:{http_port}/repo"),
    };
    let o = open(opts, server_ip, http_port, repo_url.clone())?;
    let ip_map: IpMap = Arc::default();
    let server = o.server.clone();

    // Bind everything before serving anything.
    let (http_tx, http_rx) = tokio::sync::mpsc::unbounded_channel::<HttpEvent>();
    let mut http_cfg = http::ServeConfig::new(
        SocketAddr::new(listen, http_port),
        &opts.dir,
        o.site.clone(),
    );
    http_cfg.repo_dir = Some(opts.repo.clone());
    http_cfg.overlay_dir = Some(o.overlay.clone());
    http_cfg.events = Some(http_tx.clone());
    let https_server = match https {
        Some((acceptor, l, port)) => {
            let mut cfg = http_cfg.clone();
            cfg.bind = SocketAddr::new(listen, port);
            cfg.tls = Some(acceptor);
            Some(http::Server::bind_on(cfg, l)?)
        }
        None => None,
    };
    let http_server = http::Server::bind_on(http_cfg, listener)?;

    let tftp_server = bind_tftp(opts, &o, &ip_map).await?;
    let dhcp_server = bind_dhcp(opts, &o, &ip_map)?;
    follow_http_events(http_rx, &o, &ip_map);

    ui::info(format!(
        "pxe: serving {} at {server} (repository {} at {repo_url}/), HTTP and TFTP (port {}) \
         listening on {listen}, DHCP {}; {} filled in: {}; state in {}",
        opts.dir.display(),
        opts.repo.display(),
        tftp_server.local_addr().port(),
        opts.dhcp,
        build::SERVER_PLACEHOLDER,
        if o.filled.is_empty() {
            "nothing".to_string()
        } else {
            o.filled.join(" ")
        },
        opts.state_dir.display()
    ));
    let dhcp_run = run_if_there(dhcp_server.map(|s| s.run()));
    let https_run = run_if_there(https_server.map(|s| s.run()));
    // SIGTERM and SIGINT stop the servers (also as PID 1 of a PID namespace, where only a
    // signal with a handler is delivered): every state change is already on disk, written
    // atomically as it happened.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let stopped_by = tokio::select! {
        r = http_server.run() => return r.context("the HTTP server stopped"),
        r = https_run => return r.context("the HTTPS server stopped"),
        () = tftp_server.serve() => bail!("the TFTP server stopped"),
        r = dhcp_run => return r.context("the DHCP server stopped"),
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    ui::info(format!(
        "pxe: stopped by {stopped_by}; state in {}",
        opts.state_dir.display()
    ));
    Ok(())
}

/// `slipway pxe status`'s table of a `/status` answer: MAC, hostname, profile, ref, last
/// step, result, error, updated.
pub fn status_table(v: &serde_json::Value) -> String {
    let head = [
        "MAC", "HOSTNAME", "PROFILE", "REF", "STEP", "RESULT", "STATUS", "UPDATED", "ERROR",
    ];
    let keys = [
        "mac",
        "hostname",
        "profile",
        "ref",
        "step",
        "result",
        "status",
        "updated-utc",
        "error",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
    for m in v["machines"].as_array().into_iter().flatten() {
        rows.push(
            keys.iter()
                .map(|k| match &m[*k] {
                    serde_json::Value::String(s) if !s.is_empty() => s.replace('\n', " "),
                    serde_json::Value::Null => "-".into(),
                    serde_json::Value::String(_) => "-".into(),
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if rows.len() == 1 {
        out.push_str("(no machine has booted from this server yet)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_machine_loader_configurations_name_their_machine() {
        assert_eq!(
            loader_config_mac("grub/grub.cfg-01-52-54-00-77-00-0a").as_deref(),
            Some("52:54:00:77:00:0a")
        );
        assert_eq!(
            loader_config_mac("pxelinux.cfg/01-52-54-00-77-00-0b").as_deref(),
            Some("52:54:00:77:00:0b")
        );
        assert_eq!(loader_config_mac("grub/grub.cfg"), None);
        assert_eq!(loader_config_mac("refs/a/shimx64.efi"), None);
    }

    #[test]
    fn ip_addr_show_json() {
        let shown: Vec<IpAddrShow> = serde_json::from_str(
            r#"[{"ifindex":2,"ifname":"br0","flags":["UP"],"addr_info":[
                {"family":"inet","local":"192.168.100.1","prefixlen":24,"scope":"global"}]}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_ip_addr_show(shown),
            Some(Ipv4Addr::new(192, 168, 100, 1))
        );
        let shown: Vec<IpAddrShow> = serde_json::from_str(r#"[{"ifname":"x"}]"#).unwrap();
        assert_eq!(parse_ip_addr_show(shown), None);
    }

    #[test]
    fn grub_loads_over_http_when_the_server_speaks_it() {
        assert_eq!(
            grub_http_root("http://10.77.0.1:8080").as_deref(),
            Some("(http,10.77.0.1:8080)")
        );
        assert_eq!(
            grub_http_root("http://boot.example:80/pxe/").as_deref(),
            Some("(http,boot.example:80)/pxe")
        );
        assert_eq!(grub_http_root("https://10.77.0.1:8443"), None);
        assert_eq!(grub_http_root("http://[fd00::1]:8080"), None);
    }
}
