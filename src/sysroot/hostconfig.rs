//! Applying the host-configuration part of a kickstart to a deployment: users, `sshkey`,
//! `rootpw`, hostname, `network`, `timezone`, `services`, then `%post` scripts. Shared by
//! `slipway image --kickstart` and the PXE installer.
//!
//! Everything runs inside the deployment with the stateroot's `/var` mounted at `/var` (as on
//! the booted host), after `systemd-tmpfiles` has created `/var` the way boot would: so
//! `useradd` puts homes in `/var/home`, and `%post` sees the real file system. Changes land in
//! the deployment's `/etc`, which upgrades carry forward by OSTree's three-way merge.

use std::io::Write;
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};

use crate::kickstart::{BootProto, Kickstart, Network};
use crate::sys::cmd::CommandRunExt;
use crate::sys::sandbox::Sandbox;
use crate::sysroot::deploy::Deployed;

/// Vagrant's well-known insecure public keys (RSA for older Vagrant, ed25519 for newer).
pub const VAGRANT_INSECURE_KEYS: &[&str] = &[
    "ssh-rsa AAAAB3NzaC1yc2EAAAABIwAAAQEA6NF8iallvQVp22WDkTkyrtvp9eWW6A8YVr+kz4TjGYe7gHzIw+niNltGEFHzD8+v1I2YJ6oXevct1YeS0o9HZyN1Q9qgCgzUFtdOKLv6IedplqoPkcmF0aYet2PkEDo3MlTBckFXPITAMzF8dJSIFo9D8HfdOV0IAdx4O7PtixWKn5y2hMNG0zQPyUecp4pzC6kivAIhyfHilFR61RGL+GPXQ2MWZWFYbAGjyiYJnAmCP3NOTd0jMZEnDkbUvxhMmBYSdETk1rRgm+R4LOzFUGaHqHDLKLX+FIPKcF96hrucXzcWyLbIbEgE98OHlnVYCzRdK8jlqm8tehUc9c9WhQ== vagrant insecure public key",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN1YdxBpNlzxDqfJyw/QKow1F+wvG9hXGoqiysfJOn5Y vagrant insecure public key",
];

fn sandbox(d: &Deployed) -> Sandbox {
    Sandbox::new(&d.root).bind(&d.var, "/var")
}

fn run_in(d: &Deployed, argv: &[&str]) -> Result<String> {
    sandbox(d).command(argv).run_get_string()
}

fn run_with_stdin(d: &Deployed, argv: &[&str], input: &str) -> Result<()> {
    let mut c = sandbox(d).command(argv);
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", argv.join(" ")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Create /var the way the first boot would (the generated tmpfiles.d entries).
pub fn populate_var(d: &Deployed) -> Result<()> {
    let r = sandbox(d)
        .command(&["systemd-tmpfiles", "--create", "--prefix=/var"])
        .run();
    if let Err(e) = r {
        // Entries that need a running system (e.g. ACLs on journals) may fail here; what users
        // and %post need (/var/home, /var/roothome) is checked below.
        crate::sys::ui::warn(format!("systemd-tmpfiles reported problems: {e:#}"));
    }
    for needed in ["home", "roothome"] {
        if !d.var.join(needed).is_dir() {
            bail!("/var/{needed} was not created by systemd-tmpfiles in the deployment");
        }
    }
    Ok(())
}

/// The prefix length of a netmask given dotted (`255.255.255.0`) or as a number.
pub fn prefix_len(mask: &str) -> Result<u8> {
    if let Ok(n) = mask.parse::<u8>()
        && n <= 32
    {
        return Ok(n);
    }
    let addr: std::net::Ipv4Addr = mask.parse().map_err(|_| anyhow!("bad netmask `{mask}`"))?;
    let bits = u32::from(addr);
    if bits.leading_ones() + bits.trailing_zeros() != 32 {
        bail!("netmask `{mask}` is not contiguous");
    }
    Ok(bits.leading_ones() as u8)
}

/// A systemd-networkd `.network` file for one kickstart `network` line.
pub fn network_file(n: &Network) -> Result<Option<String>> {
    if n.onboot == Some(false) {
        return Ok(None);
    }
    let mut s = String::from("# From the kickstart's network command.\n[Match]\n");
    match n.device.as_deref() {
        None | Some("link") | Some("bootif") => s.push_str("Type=ether\nName=en* eth*\n"),
        Some(dev) if dev.len() == 17 && dev.chars().filter(|c| *c == ':').count() == 5 => {
            s.push_str(&format!("MACAddress={}\n", dev.to_ascii_lowercase()))
        }
        Some(dev) => s.push_str(&format!("Name={dev}\n")),
    }
    if let Some(mtu) = n.mtu {
        s.push_str(&format!("\n[Link]\nMTUBytes={mtu}\n"));
    }
    s.push_str("\n[Network]\n");
    match n.bootproto {
        Some(BootProto::Static) => {
            let ip =
                n.ip.as_deref()
                    .ok_or_else(|| anyhow!("{}: static network without --ip", n.at))?;
            let prefix = match n.netmask.as_deref() {
                Some(m) => prefix_len(m).map_err(|e| anyhow!("{}: {e}", n.at))?,
                None => 24,
            };
            s.push_str(&format!("Address={ip}/{prefix}\n"));
            if let (Some(gw), false) = (&n.gateway, n.nodefroute) {
                s.push_str(&format!("Gateway={gw}\n"));
            }
        }
        _ => s.push_str("DHCP=yes\n"),
    }
    if !n.nodns {
        for ns in &n.nameservers {
            s.push_str(&format!("DNS={ns}\n"));
        }
    }
    Ok(Some(s))
}

fn home_of(d: &Deployed, user: &str) -> Result<(String, u32, u32)> {
    let passwd =
        std::fs::read_to_string(d.root.join("etc/passwd")).context("reading /etc/passwd")?;
    let u = crate::sysroot::userdb::parse_passwd(&passwd)
        .into_iter()
        .find(|u| u.name == user)
        .ok_or_else(|| anyhow!("user `{user}` does not exist in the deployment"))?;
    Ok((u.home, u.uid, u.gid))
}

/// Append `keys` (one per line) to the user's `~/.ssh/authorized_keys`, owned by the user.
fn add_authorized_keys(d: &Deployed, user: &str, keys: &str) -> Result<()> {
    let (home, uid, gid) = home_of(d, user)?;
    let script = format!(
        "set -e\ninstall -d -m 700 -o {uid} -g {gid} {h}/.ssh\nprintf '%s\\n' {k} >> {h}/.ssh/authorized_keys\nchown {uid}:{gid} {h}/.ssh/authorized_keys\nchmod 600 {h}/.ssh/authorized_keys\n",
        h = crate::sys::cmd::shell_quote(&home),
        k = crate::sys::cmd::shell_quote(keys)
    );
    run_in(d, &["sh", "-c", &script]).map(|_| ())
}

/// Apply everything but `%post`.
pub fn apply(ks: &Kickstart, d: &Deployed) -> Result<()> {
    populate_var(d)?;
    let groups = crate::sysroot::userdb::parse_group(
        &std::fs::read_to_string(d.root.join("etc/group")).context("reading /etc/group")?,
    );
    for u in &ks.users {
        for g in &u.groups {
            if !groups.iter().any(|x| &x.name == g) {
                bail!(
                    "{}: user {}: group `{g}` does not exist in the commit",
                    u.at,
                    u.name
                );
            }
        }
        let mut argv: Vec<String> = vec!["useradd".into(), "--create-home".into()];
        if !u.groups.is_empty() {
            argv.extend(["--groups".into(), u.groups.join(",")]);
        }
        argv.extend([
            "--shell".into(),
            u.shell.clone().unwrap_or_else(|| "/bin/bash".into()),
        ]);
        if let Some(uid) = u.uid {
            argv.extend(["--uid".into(), uid.to_string()]);
        }
        if let Some(gid) = u.gid {
            argv.extend(["--gid".into(), gid.to_string()]);
        }
        if let Some(h) = &u.homedir {
            argv.extend(["--home-dir".into(), h.clone()]);
        }
        if let Some(c) = &u.gecos {
            argv.extend(["--comment".into(), c.clone()]);
        }
        argv.push(u.name.clone());
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        run_in(d, &refs).map_err(|e| anyhow!("{}: creating user {}: {e:#}", u.at, u.name))?;
        if let Some(pw) = &u.password {
            let mut argv = vec!["chpasswd"];
            if u.iscrypted {
                argv.push("--encrypted");
            }
            run_with_stdin(d, &argv, &format!("{}:{pw}\n", u.name))
                .map_err(|e| anyhow!("{}: setting the password of {}: {e:#}", u.at, u.name))?;
        }
        if u.lock {
            run_in(d, &["usermod", "--lock", &u.name])?;
        }
    }
    if let Some(r) = &ks.rootpw {
        if let Some(pw) = &r.password {
            let mut argv = vec!["chpasswd"];
            if r.iscrypted {
                argv.push("--encrypted");
            }
            run_with_stdin(d, &argv, &format!("root:{pw}\n"))
                .context("rootpw: setting the root password")?;
        }
        if r.lock {
            run_in(d, &["usermod", "--lock", "root"]).context("rootpw --lock")?;
        }
    }
    for k in &ks.sshkeys {
        add_authorized_keys(d, &k.username, &k.key)
            .map_err(|e| anyhow!("{}: sshkey for {}: {e:#}", k.at, k.username))?;
    }
    if let Some(h) = ks.hostname() {
        std::fs::write(d.root.join("etc/hostname"), format!("{h}\n"))
            .context("writing /etc/hostname")?;
    }
    let netdir = d.root.join("etc/systemd/network");
    for (i, n) in ks.network.iter().enumerate() {
        if n.device.is_none() && n.bootproto.is_none() && n.ip.is_none() {
            // Only a hostname.
            continue;
        }
        if let Some(text) = network_file(n)? {
            std::fs::create_dir_all(&netdir)?;
            std::fs::write(netdir.join(format!("10-kickstart-{i}.network")), text)
                .context("writing a .network file")?;
        }
    }
    if let Some(tz) = &ks.timezone {
        let zone = d.root.join("usr/share/zoneinfo").join(&tz.name);
        if !zone.is_file() {
            bail!(
                "timezone: `{}` is not a zone in the commit's /usr/share/zoneinfo",
                tz.name
            );
        }
        let lt = d.root.join("etc/localtime");
        let _ = std::fs::remove_file(&lt);
        std::os::unix::fs::symlink(format!("/usr/share/zoneinfo/{}", tz.name), &lt)?;
        std::fs::write(d.root.join("etc/timezone"), format!("{}\n", tz.name))?;
        if !tz.ntpservers.is_empty() {
            let dir = d.root.join("etc/systemd/timesyncd.conf.d");
            std::fs::create_dir_all(&dir)?;
            std::fs::write(
                dir.join("kickstart.conf"),
                format!("[Time]\nNTP={}\n", tz.ntpservers.join(" ")),
            )?;
        }
        if tz.nontp {
            run_in(d, &["systemctl", "disable", "systemd-timesyncd.service"])
                .context("timezone --nontp")?;
        }
    }
    for s in &ks.services.enabled {
        run_in(d, &["systemctl", "enable", s])
            .map_err(|e| anyhow!("services --enabled: {s}: {e:#}"))?;
    }
    for s in &ks.services.disabled {
        run_in(d, &["systemctl", "disable", s])
            .map_err(|e| anyhow!("services --disabled: {s}: {e:#}"))?;
    }
    Ok(())
}

/// Run the `%post` scripts (not `--nochroot`) inside the deployment, with network.
pub fn run_post(ks: &Kickstart, d: &Deployed) -> Result<()> {
    for (i, s) in ks.post.iter().enumerate() {
        if s.nochroot {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("post");
        std::fs::write(&path, &s.body)?;
        let mut c = sandbox(d)
            .network(true)
            .ro_bind(&path, "/tmp/slipway-post")
            .command(&[s.interpreter.as_str(), "/tmp/slipway-post"]);
        let out = c
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running %post #{i}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(log) = &s.log {
            let target = d.root.join(log.trim_start_matches('/'));
            if let Some(p) = target.parent() {
                let _ = std::fs::create_dir_all(p);
            }
            let _ = std::fs::write(&target, &text);
        }
        if !out.status.success() {
            let msg = format!(
                "{}: %post script failed ({}); last lines:\n{}",
                s.at,
                out.status,
                crate::sys::cmd::Tail::from_text(&text, 20)
            );
            if s.erroronfail {
                bail!(msg);
            }
            crate::sys::ui::warn(msg);
        }
    }
    Ok(())
}

/// Additions that make an image a Vagrant box: the `vagrant` user with the insecure keys and
/// passwordless sudo.
pub fn vagrant_user(d: &Deployed) -> Result<()> {
    populate_var(d)?;
    if home_of(d, "vagrant").is_err() {
        run_in(
            d,
            &[
                "useradd",
                "--create-home",
                "--shell",
                "/bin/bash",
                "--groups",
                "sudo",
                "vagrant",
            ],
        )
        .context("creating the vagrant user")?;
    }
    run_with_stdin(d, &["chpasswd"], "vagrant:vagrant\n")?;
    add_authorized_keys(d, "vagrant", &VAGRANT_INSECURE_KEYS.join("\n"))
        .context("installing Vagrant's insecure key")?;
    let sudoers = d.root.join("etc/sudoers.d/vagrant");
    std::fs::create_dir_all(sudoers.parent().unwrap())?;
    std::fs::write(
        &sudoers,
        "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440))?;
    Ok(())
}

/// Check a sudoers drop-in with the deployment's visudo.
pub fn check_sudoers(d: &Deployed) -> Result<()> {
    run_in(d, &["visudo", "-c"])
        .map(|_| ())
        .context("visudo -c")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kickstart::parse_str;

    #[test]
    fn netmasks() {
        assert_eq!(prefix_len("255.255.255.0").unwrap(), 24);
        assert_eq!(prefix_len("16").unwrap(), 16);
        assert!(prefix_len("255.0.255.0").is_err());
    }

    #[test]
    fn network_lines_become_networkd_files() {
        let ks = parse_str(
            "network --bootproto=static --device=52:54:00:12:34:56 --ip=10.0.0.5 --netmask=255.255.255.0 --gateway=10.0.0.1 --nameserver=10.0.0.2\nnetwork --bootproto=dhcp --device=ens3\n",
            "t.ks",
        )
        .unwrap();
        let a = network_file(&ks.network[0]).unwrap().unwrap();
        assert!(a.contains("MACAddress=52:54:00:12:34:56"), "{a}");
        assert!(a.contains("Address=10.0.0.5/24"));
        assert!(a.contains("Gateway=10.0.0.1"));
        assert!(a.contains("DNS=10.0.0.2"));
        let b = network_file(&ks.network[1]).unwrap().unwrap();
        assert!(b.contains("Name=ens3") && b.contains("DHCP=yes"), "{b}");
    }
}
