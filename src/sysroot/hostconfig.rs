//! Applying the host-configuration part of a kickstart to a deployment: users, `sshkey`,
//! `rootpw` (and `--allow-ssh` as an sshd drop-in), hostname, `network` as systemd-networkd
//! files (IPv4, IPv6), `timezone`, `lang` (/etc/locale.conf), `keyboard` (/etc/vconsole.conf),
//! `services`, then `%post` scripts. Shared by `slipway image --kickstart` and the PXE
//! installer.
//!
//! Everything runs inside the deployment with the stateroot's `/var` mounted at `/var` (as on
//! the booted host), after `systemd-tmpfiles` has created `/var` the way boot would: so
//! `useradd` puts homes in `/var/home`, and `%post` sees the real file system. Changes land in
//! the deployment's `/etc`, which upgrades carry forward by OSTree's three-way merge.
//!
//! Files are written from the build machine only through [`Tree`] handles on the deployment
//! and on the stateroot's `/var` (`Target`), so a link in the commit (`/etc/x -> /etc/y`,
//! `/var/log -> /somewhere`) resolves inside them, never onto the build machine; what runs
//! programs (useradd, `authorized_keys`, the `/etc/localtime` link) runs inside the sandbox.

use std::io::Write;

use anyhow::{Context, Result, anyhow, bail};
use ostree::gio;

use crate::kickstart::{BootProto, Ipv6, Keyboard, Kickstart, Network, Script};
use crate::sys::cmd::CommandRunExt;
use crate::sys::sandbox::Sandbox;
use crate::sys::tree::{self, Tree};
use crate::sysroot::deploy::Deployed;
use crate::sysroot::userdb::{Group, parse_group};

/// A deployment as its booted host sees it: the deployment's root with the stateroot's `/var`
/// at `/var`. Every path is resolved inside one of the two.
struct Target {
    root: Tree,
    var: Tree,
}

impl Target {
    fn open(d: &Deployed) -> Result<Self> {
        Ok(Self {
            root: Tree::open(&d.root)?,
            var: Tree::open(&d.var)?,
        })
    }

    /// The deployment's root (for `/etc`, `/usr`).
    fn root(&self) -> &Tree {
        &self.root
    }

    /// The tree and path inside it that the host's `/REL` (checked, relative) is in: `/var/...`
    /// is in the stateroot's `/var`, and so is what the top-level links of an OSTree host lead
    /// into (`/root -> var/roothome`, `/home -> var/home`); everything else is in the root.
    fn locate(&self, rel: &str) -> Result<(&Tree, String)> {
        let (first, rest) = rel.split_once('/').unwrap_or((rel, ""));
        let mut first = first.to_string();
        // Only the top-level name is looked at: a link directly in the root, read without
        // following anything (the root is the deployment directory itself).
        if let Ok(target) = std::fs::read_link(self.root.path().join(&first)) {
            let target = target.to_string_lossy();
            let target = target.trim_start_matches('/');
            if target == "var" || target.starts_with("var/") {
                first = target.to_string();
            }
        }
        let full = if rest.is_empty() {
            first
        } else {
            format!("{first}/{rest}")
        };
        let full = tree::check_path("path", &full)?;
        match full.strip_prefix("var/") {
            Some(in_var) => Ok((&self.var, in_var.to_string())),
            None if full == "var" => bail!("/{rel} names /var itself"),
            None => Ok((&self.root, full)),
        }
    }
}

/// The sshd drop-in written for `rootpw --allow-ssh`. sshd keeps the first value it reads and
/// Debian's sshd_config includes `sshd_config.d/*.conf` first, in name order.
pub const SSHD_ROOT_LOGIN_DROPIN: &str = "etc/ssh/sshd_config.d/10-kickstart-rootpw.conf";

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
    sandbox(d)
        .command(argv)
        .run_with_input(input.as_bytes())
        .map(|_| ())
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
    let static4 = !n.noipv4 && n.bootproto == Some(BootProto::Static);
    let dhcp4 = !n.noipv4 && !static4;
    let dhcp6 = match n.ipv6 {
        Some(Ipv6::Dhcp) => true,
        // Without --ipv6, DHCP=yes as Anaconda's DHCP does (and router advertisements).
        None => dhcp4 && !n.noipv6,
        Some(_) => false,
    };
    if static4 {
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
    match (dhcp4, dhcp6) {
        (true, true) => s.push_str("DHCP=yes\n"),
        (true, false) => s.push_str("DHCP=ipv4\n"),
        (false, true) => s.push_str("DHCP=ipv6\n"),
        (false, false) => {}
    }
    match n.ipv6 {
        Some(Ipv6::Static { address, prefix }) => {
            s.push_str(&format!("Address={address}/{prefix}\nIPv6AcceptRA=no\n"));
        }
        Some(Ipv6::Auto) => s.push_str("IPv6AcceptRA=yes\n"),
        // Only IPv6 and nothing said about it: Anaconda's default, automatic.
        None if n.noipv4 => s.push_str("IPv6AcceptRA=yes\n"),
        Some(Ipv6::Dhcp) | None => {}
    }
    if let (Some(gw), false) = (n.ipv6gateway, n.nodefroute) {
        s.push_str(&format!("Gateway={gw}\n"));
    }
    if n.noipv6 {
        s.push_str("LinkLocalAddressing=no\nIPv6AcceptRA=no\n");
    }
    if !n.nodns {
        for ns in &n.nameservers {
            s.push_str(&format!("DNS={ns}\n"));
        }
    }
    if n.ipv6 == Some(Ipv6::Dhcp) {
        // Ask a DHCPv6 server without waiting for a router advertisement to say so.
        s.push_str("\n[DHCPv6]\nWithoutRA=solicit\n");
    }
    Ok(Some(s))
}

/// /etc/locale.conf for `lang`.
pub fn locale_conf(lang: &str) -> String {
    format!("# From the kickstart's lang command.\nLANG={lang}\n")
}

/// /etc/vconsole.conf for `keyboard`: the console keymap, and the X layouts when given.
pub fn vconsole_conf(k: &Keyboard) -> String {
    let mut s = format!(
        "# From the kickstart's keyboard command.\nKEYMAP={}\n",
        k.keymap
    );
    if !k.xlayouts.is_empty() {
        let layouts: Vec<&str> = k.xlayouts.iter().map(|x| x.layout.as_str()).collect();
        s.push_str(&format!("XKBLAYOUT={}\n", layouts.join(",")));
        if k.xlayouts.iter().any(|x| x.variant.is_some()) {
            let variants: Vec<&str> = k
                .xlayouts
                .iter()
                .map(|x| x.variant.as_deref().unwrap_or(""))
                .collect();
            s.push_str(&format!("XKBVARIANT={}\n", variants.join(",")));
        }
    }
    if !k.switch.is_empty() {
        s.push_str(&format!("XKBOPTIONS={}\n", k.switch.join(",")));
    }
    s
}

/// The configuration that is only files in `/etc` (no program runs): hostname, networkd
/// files, locale, keyboard, the sshd drop-in of `rootpw --allow-ssh`.
fn write_config_files(ks: &Kickstart, root: &Tree) -> Result<()> {
    if let Some(h) = ks.hostname() {
        write_text(root, "etc/hostname", &format!("{h}\n"), 0o644)?;
    }
    for (i, n) in ks.network.iter().enumerate() {
        let only_hostname = n.device.is_none()
            && n.bootproto.is_none()
            && n.ip.is_none()
            && n.ipv6.is_none()
            && n.ipv6gateway.is_none()
            && !n.noipv4
            && !n.noipv6;
        if only_hostname {
            continue;
        }
        if let Some(text) = network_file(n)? {
            let rel = format!("etc/systemd/network/10-kickstart-{i}.network");
            write_text(root, &rel, &text, 0o644).with_context(|| format!("{}: network", n.at))?;
        }
    }
    if let Some(lang) = &ks.lang {
        let text = locale_conf(lang);
        write_text(root, "etc/locale.conf", &text, 0o644).context("lang")?;
        // Debian's PAM sessions (pam_env) read the locale from here, not from locale.conf.
        write_text(root, "etc/default/locale", &text, 0o644).context("lang")?;
    }
    if let Some(k) = &ks.keyboard {
        write_text(root, "etc/vconsole.conf", &vconsole_conf(k), 0o644).context("keyboard")?;
    }
    if ks.rootpw.as_ref().is_some_and(|r| r.allow_ssh) {
        write_text(
            root,
            SSHD_ROOT_LOGIN_DROPIN,
            "# From the kickstart's `rootpw --allow-ssh`.\nPermitRootLogin yes\n",
            0o644,
        )
        .context("rootpw --allow-ssh")?;
    }
    Ok(())
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

/// One message per `user --groups` entry that is not a group in `groups`, naming its line.
fn missing_groups(ks: &Kickstart, groups: &[Group]) -> Vec<String> {
    let mut problems = Vec::new();
    for u in &ks.users {
        for g in &u.groups {
            if !groups.iter().any(|x| &x.name == g) {
                problems.push(format!(
                    "{}: user {}: group `{g}` does not exist in the commit",
                    u.at, u.name
                ));
            }
        }
    }
    problems
}

/// Check a kickstart against the commit it will be applied to, before any work: the groups
/// `user --groups` names exist in the commit's `/usr/etc/group`, and the `timezone` is a zone
/// in its `/usr/share/zoneinfo`. All problems are reported together, each naming its line.
pub fn check_against_commit(ks: &Kickstart, repo: &ostree::Repo, commit: &str) -> Result<()> {
    let short = commit.get(..12).unwrap_or(commit);
    let mut problems = Vec::new();
    if ks.users.iter().any(|u| !u.groups.is_empty()) {
        let text = crate::repo::read_commit_file(repo, commit, "usr/etc/group")?
            .ok_or_else(|| anyhow!("commit {short} has no /usr/etc/group"))?;
        let groups = parse_group(&String::from_utf8_lossy(&text));
        problems.extend(missing_groups(ks, &groups));
    }
    if let Some(tz) = &ks.timezone {
        let path = format!("usr/share/zoneinfo/{}", tz.name);
        match crate::repo::commit_path_type(repo, commit, &path)? {
            Some(gio::FileType::Regular | gio::FileType::SymbolicLink) => {}
            Some(_) | None => problems.push(format!(
                "{}: timezone: `{}` is not a zone in the commit's /usr/share/zoneinfo",
                tz.at, tz.name
            )),
        }
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(anyhow!(problems.remove(0))),
        _ => bail!(
            "kickstart does not fit commit {short}:\n  - {}",
            problems.join("\n  - ")
        ),
    }
}

/// Apply everything but `%post`.
pub fn apply(ks: &Kickstart, d: &Deployed) -> Result<()> {
    populate_var(d)?;
    let target = Target::open(d)?;
    let root = target.root();
    let groups = parse_group(
        &std::fs::read_to_string(d.root.join("etc/group")).context("reading /etc/group")?,
    );
    if let Some(problem) = missing_groups(ks, &groups).into_iter().next() {
        bail!(problem);
    }
    for u in &ks.users {
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
    write_config_files(ks, root)?;
    if let Some(tz) = &ks.timezone {
        let zone = tree::check_path(
            &format!("{}: timezone", tz.at),
            &format!("usr/share/zoneinfo/{}", tz.name),
        )?;
        if !root.exists(&zone)? || root.is_dir(&zone)? {
            bail!(
                "{}: timezone: `{}` is not a zone in the commit's /usr/share/zoneinfo",
                tz.at,
                tz.name
            );
        }
        // The link is made inside the sandbox: it resolves /etc there, not on this machine.
        let link = format!("/{zone}");
        run_in(d, &["ln", "-sfn", &link, "/etc/localtime"])
            .with_context(|| format!("{}: timezone: linking /etc/localtime", tz.at))?;
        write_text(root, "etc/timezone", &format!("{}\n", tz.name), 0o644)?;
        if !tz.ntpservers.is_empty() {
            write_text(
                root,
                "etc/systemd/timesyncd.conf.d/kickstart.conf",
                &format!("[Time]\nNTP={}\n", tz.ntpservers.join(" ")),
                0o644,
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

/// Write `text` to `rel` in `tree` (replacing, never following, a link there).
fn write_text(tree: &Tree, rel: &str, text: &str, mode: u32) -> Result<()> {
    tree.write_file(rel, &mut text.as_bytes(), mode)
}

/// Append a `%post` script's output to its `--log` file, inside the host's file system.
fn write_post_log(target: &Target, script: &Script, log: &str, text: &str) -> Result<()> {
    let what = format!("{}: %post --log={log}", script.at);
    let rel = tree::check_path(&what, log)?;
    let (tree, rel) = target.locate(&rel).context(what.clone())?;
    let mut f = tree.open_append(&rel).context(what.clone())?;
    f.write_all(text.as_bytes()).context(what)
}

/// Run the `%post` scripts (not `--nochroot`) inside the deployment, with network.
pub fn run_post(ks: &Kickstart, d: &Deployed) -> Result<()> {
    let target = Target::open(d)?;
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
            .run_get_output()
            .with_context(|| format!("running %post #{i}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(log) = &s.log {
            write_post_log(&target, s, log, &text)?;
        }
        script_outcome(s, "%post", out.status, &text)?;
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
    write_text(
        Target::open(d)?.root(),
        "etc/sudoers.d/vagrant",
        "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n",
        0o440,
    )
}

/// Check a sudoers drop-in with the deployment's visudo.
pub fn check_sudoers(d: &Deployed) -> Result<()> {
    run_in(d, &["visudo", "-c"])
        .map(|_| ())
        .context("visudo -c")
}

/// How a kickstart script ended: a failure is an error with its last lines under
/// `--erroronfail`, a warning otherwise. `what` names the section (`%post`, `%pre`...).
pub fn script_outcome(
    s: &crate::kickstart::Script,
    what: &str,
    status: std::process::ExitStatus,
    text: &str,
) -> Result<()> {
    if status.success() {
        return Ok(());
    }
    let msg = format!(
        "{}: {what} script failed ({status}); last lines:\n{}",
        s.at,
        crate::sys::cmd::Tail::from_text(text, 20)
    );
    if s.erroronfail {
        bail!(msg);
    }
    crate::sys::ui::warn(msg);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kickstart::parse_str;

    /// A deployment (root and stateroot /var) whose `var/log` links are absolute links to a
    /// directory of the build machine, as a commit could hold, and an OSTree `/root` link.
    struct Fixture {
        host: tempfile::TempDir,
        _dir: tempfile::TempDir,
        deployed: Deployed,
    }

    fn fixture() -> Fixture {
        use std::os::unix::fs::symlink;
        let host = tempfile::tempdir().unwrap();
        std::fs::write(host.path().join("victim"), "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("deploy");
        let var = dir.path().join("var");
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(var.join("roothome")).unwrap();
        // The links' target exists inside the trees too (a correct resolution finds it there,
        // a wrong one the build machine's).
        let inside = host.path().strip_prefix("/").unwrap();
        std::fs::create_dir_all(var.join(inside)).unwrap();
        std::fs::create_dir_all(root.join(inside)).unwrap();
        symlink(host.path(), root.join("var/log")).unwrap();
        symlink(host.path(), var.join("log")).unwrap();
        symlink(host.path().join("nowhere"), var.join("dangling")).unwrap();
        symlink("var/roothome", root.join("root")).unwrap();
        symlink(host.path().join("victim"), root.join("etc/post.log")).unwrap();
        let deployed = Deployed {
            commit: "0".repeat(64),
            osname: "debian".into(),
            root,
            var,
            kernel_args: vec![],
            version: None,
        };
        Fixture {
            host,
            _dir: dir,
            deployed,
        }
    }

    fn post_with_log(log: &str) -> Script {
        let ks = parse_str(&format!("\n\n%post --log={log}\ntrue\n%end\n"), "t.ks").unwrap();
        ks.post[0].clone()
    }

    #[test]
    fn post_log_stays_inside_the_deployment() {
        let f = fixture();
        let d = &f.deployed;
        let target = Target::open(d).unwrap();
        let host_files = || {
            let mut v: Vec<String> = std::fs::read_dir(f.host.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let inside = f.host.path().strip_prefix("/").unwrap();

        // /var/log is an absolute link to the build machine: it resolves inside /var.
        let s = post_with_log("/var/log/post.log");
        write_post_log(&target, &s, "/var/log/post.log", "one\n").unwrap();
        write_post_log(&target, &s, "/var/log/post.log", "two\n").unwrap();
        assert_eq!(host_files(), ["victim"]);
        let log = d.var.join(inside).join("post.log");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");

        // /root leads into the stateroot's /var, as on the booted host.
        let s = post_with_log("/root/ks-post.log");
        write_post_log(&target, &s, "/root/ks-post.log", "root\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(d.var.join("roothome/ks-post.log")).unwrap(),
            "root\n"
        );

        // A link as the log file itself is refused, naming the kickstart line.
        let s = post_with_log("/etc/post.log");
        let err = format!(
            "{:#}",
            write_post_log(&target, &s, "/etc/post.log", "x").unwrap_err()
        );
        assert!(
            err.starts_with("t.ks:3: %post --log=/etc/post.log"),
            "{err}"
        );
        assert!(err.contains("symbolic link"), "{err}");
        // A link whose target the tree lacks is an error too, not a way out.
        let s = post_with_log("/var/dangling/x.log");
        let err = format!(
            "{:#}",
            write_post_log(&target, &s, "/var/dangling/x.log", "x").unwrap_err()
        );
        assert!(
            err.starts_with("t.ks:3: %post --log=/var/dangling/x.log"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(f.host.path().join("victim")).unwrap(),
            "host"
        );
        assert_eq!(host_files(), ["victim"]);
    }

    #[test]
    fn ipv6_and_ipv4_less_networks() {
        let ks = parse_str(
            "network --device=eth0 --noipv4 --ipv6=dhcp\n\
             network --device=eth1 --noipv4 --ipv6=2001:db8::5/48 --ipv6gateway=2001:db8::1 --nameserver=2001:db8::53\n\
             network --device=eth2 --ipv6=auto\n\
             network --device=eth3 --noipv4\n\
             network --device=eth4 --noipv6\n\
             network --device=eth5 --bootproto=static --ip=10.0.0.5 --ipv6=auto\n",
            "t.ks",
        )
        .unwrap();
        let files: Vec<String> = ks
            .network
            .iter()
            .map(|n| network_file(n).unwrap().unwrap())
            .collect();
        let network = |i: usize| {
            let f = &files[i];
            let start = f.find("[Network]\n").unwrap() + "[Network]\n".len();
            f[start..].to_string()
        };
        assert_eq!(
            network(0),
            "DHCP=ipv6\n\n[DHCPv6]\nWithoutRA=solicit\n",
            "{}",
            files[0]
        );
        assert_eq!(
            network(1),
            "Address=2001:db8::5/48\nIPv6AcceptRA=no\nGateway=2001:db8::1\nDNS=2001:db8::53\n"
        );
        assert_eq!(network(2), "DHCP=ipv4\nIPv6AcceptRA=yes\n");
        assert_eq!(network(3), "IPv6AcceptRA=yes\n");
        assert_eq!(
            network(4),
            "DHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        );
        assert_eq!(network(5), "Address=10.0.0.5/24\nIPv6AcceptRA=yes\n");
    }

    #[test]
    fn locale_keyboard_and_root_ssh_files() {
        use std::os::unix::fs::symlink;
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("victim");
        std::fs::write(&victim, "host").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/default")).unwrap();
        // A commit's absolute link where a file is written must not lead out of the tree.
        symlink(&victim, dir.path().join("etc/locale.conf")).unwrap();
        symlink(&victim, dir.path().join("etc/vconsole.conf")).unwrap();
        let ks = parse_str(
            "lang de_DE.UTF-8\n\
             keyboard --vckeymap=cz-qwerty --xlayouts='us','cz (qwerty)' --switch=grp:alt_shift_toggle\n\
             rootpw --plaintext --allow-ssh secret\n\
             network --hostname=h1 --device=eth0 --noipv4 --ipv6=auto\n",
            "t.ks",
        )
        .unwrap();
        let root = Tree::open(dir.path()).unwrap();
        write_config_files(&ks, &root).unwrap();
        let read = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host");
        assert!(read("etc/locale.conf").ends_with("\nLANG=de_DE.UTF-8\n"));
        assert!(!dir.path().join("etc/locale.conf").is_symlink());
        assert_eq!(read("etc/default/locale"), read("etc/locale.conf"));
        assert_eq!(
            read("etc/vconsole.conf"),
            "# From the kickstart's keyboard command.\n\
             KEYMAP=cz-qwerty\n\
             XKBLAYOUT=us,cz\n\
             XKBVARIANT=,qwerty\n\
             XKBOPTIONS=grp:alt_shift_toggle\n"
        );
        assert!(
            read(SSHD_ROOT_LOGIN_DROPIN).ends_with("\nPermitRootLogin yes\n"),
            "{}",
            read(SSHD_ROOT_LOGIN_DROPIN)
        );
        assert_eq!(read("etc/hostname"), "h1\n");
        assert!(read("etc/systemd/network/10-kickstart-0.network").contains("IPv6AcceptRA=yes"));

        // Without --allow-ssh, no drop-in; a bare keymap writes no X settings.
        let dir = tempfile::tempdir().unwrap();
        let ks = parse_str("rootpw --lock\nkeyboard us\n", "t.ks").unwrap();
        write_config_files(&ks, &Tree::open(dir.path()).unwrap()).unwrap();
        assert!(!dir.path().join(SSHD_ROOT_LOGIN_DROPIN).exists());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/vconsole.conf")).unwrap(),
            "# From the kickstart's keyboard command.\nKEYMAP=us\n"
        );
    }

    /// A tiny archive repository with one commit holding a group file and a few zones.
    fn tiny_commit(dir: &std::path::Path) -> (ostree::Repo, String) {
        use std::process::Command;
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("usr/etc")).unwrap();
        std::fs::create_dir_all(tree.join("usr/share/zoneinfo/Europe")).unwrap();
        std::fs::create_dir_all(tree.join("usr/share/zoneinfo/Etc")).unwrap();
        std::fs::write(
            tree.join("usr/etc/group"),
            "root:x:0:\nsudo:x:27:\nadm:x:4:\n",
        )
        .unwrap();
        std::fs::write(tree.join("usr/share/zoneinfo/Europe/Berlin"), "TZif").unwrap();
        std::fs::write(tree.join("usr/share/zoneinfo/Etc/UTC"), "TZif").unwrap();
        std::os::unix::fs::symlink("Etc/UTC", tree.join("usr/share/zoneinfo/UTC")).unwrap();
        let repo = dir.join("repo");
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["init", "--mode=archive"]));
        ok(Command::new("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(["commit", "--branch=test/tiny", "--no-xattrs"])
            .arg(format!("--tree=dir={}", tree.display())));
        let repo = crate::repo::open(&repo).unwrap();
        let commit = crate::repo::resolve_required(&repo, "test/tiny").unwrap();
        (repo, commit)
    }

    #[test]
    fn reading_a_file_of_an_archive_commit_logs_no_glib_critical() {
        use ostree::glib;
        use std::sync::Mutex;
        static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let id = glib::log_set_handler(
            Some("GLib-GIO"),
            glib::LogLevels::LEVEL_CRITICAL | glib::LogLevels::LEVEL_WARNING,
            false,
            false,
            |_, _, msg| SEEN.lock().unwrap().push(msg.to_string()),
        );
        let dir = tempfile::tempdir().unwrap();
        let (repo, commit) = tiny_commit(dir.path());
        let group = crate::repo::read_commit_file(&repo, &commit, "usr/etc/group").unwrap();
        let missing = crate::repo::read_commit_file(&repo, &commit, "usr/etc/nothing").unwrap();
        glib::log_remove_handler(Some("GLib-GIO"), id);
        assert_eq!(group.unwrap(), b"root:x:0:\nsudo:x:27:\nadm:x:4:\n");
        assert_eq!(missing, None);
        let seen = SEEN.lock().unwrap();
        assert!(seen.is_empty(), "GLib said: {seen:?}");
    }

    #[test]
    fn kickstart_is_checked_against_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, commit) = tiny_commit(dir.path());
        let check = |text: &str| {
            let ks = parse_str(text, "t.ks").unwrap();
            check_against_commit(&ks, &repo, &commit).map_err(|e| format!("{e:#}"))
        };
        check("user --name=core --groups=sudo,adm\ntimezone --utc Europe/Berlin\n").unwrap();
        check("timezone --utc UTC\n").unwrap();
        check("user --name=nogroups\n").unwrap();

        let e = check("text\nuser --name=core --groups=sudo,docker\n").unwrap_err();
        assert_eq!(
            e,
            "t.ks:2: user core: group `docker` does not exist in the commit"
        );
        let e = check("\n\ntimezone --utc Mars/Olympus_Mons\n").unwrap_err();
        assert_eq!(
            e,
            "t.ks:3: timezone: `Mars/Olympus_Mons` is not a zone in the commit's /usr/share/zoneinfo"
        );
        // A directory of zones is not a zone.
        let e = check("timezone --utc Europe\n").unwrap_err();
        assert!(e.starts_with("t.ks:1: timezone: `Europe`"), "{e}");

        // Every problem at once.
        let e = check(
            "user --name=a --groups=wheel\nuser --name=b --groups=sudo,docker\ntimezone --utc Nowhere\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with(&format!(
                "kickstart does not fit commit {}:\n",
                &commit[..12]
            )),
            "{e}"
        );
        for needle in [
            "  - t.ks:1: user a: group `wheel`",
            "  - t.ks:2: user b: group `docker`",
            "  - t.ks:3: timezone: `Nowhere`",
        ] {
            assert!(e.contains(needle), "`{needle}` missing in: {e}");
        }
    }

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
