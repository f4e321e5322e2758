//! The treefile's `container-images` and `services`: what they may say, checked where they are
//! parsed (each entry in the file that holds it, errors naming that file and the entry's own
//! index) and, once every include is merged, against each other (a service naming an image
//! the treefile does not bind, two services on one host port, unknown or circular `needs`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::{AddFile, AptRepo, FileRef, Script};

/// One image as written in a treefile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawImage {
    pub name: String,
    pub tag: String,
    pub packages: Option<Vec<String>>,
    pub archive: Option<String>,
    pub repos: Option<Vec<super::RawRepo>>,
    pub add_files: Option<Vec<(String, String)>>,
    pub postprocess: Option<Vec<String>>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub exposed_ports: Option<Vec<u16>>,
}

/// One service as written in a treefile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawService {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub ports: Option<Vec<String>>,
    pub volumes: Option<Vec<String>>,
    pub environment: Option<BTreeMap<String, String>>,
    pub restart: Option<String>,
    pub needs: Option<Vec<String>>,
}

/// Where an image's root comes from.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ImageSource {
    /// Built by slipway's apt/mmdebstrap pipeline from these packages.
    Packages {
        packages: Vec<String>,
        repos: Vec<AptRepo>,
    },
    /// A `docker save` archive or an OCI layout archive next to the treefile.
    Archive(FileRef),
}

/// The runtime configuration of an image (what `docker import --change` sets).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub workdir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub exposed_ports: Vec<u16>,
}

impl ImageConfig {
    /// `over`'s keys replace this one's (the treefile over an archive's own config); its
    /// `env` entries are added.
    pub fn overlaid(&self, over: &ImageConfig) -> ImageConfig {
        let mut env = self.env.clone();
        env.extend(over.env.clone());
        let mut ports: BTreeSet<u16> = self.exposed_ports.iter().copied().collect();
        ports.extend(over.exposed_ports.iter().copied());
        ImageConfig {
            user: over.user.clone().or_else(|| self.user.clone()),
            workdir: over.workdir.clone().or_else(|| self.workdir.clone()),
            entrypoint: over.entrypoint.clone().or_else(|| self.entrypoint.clone()),
            cmd: over.cmd.clone().or_else(|| self.cmd.clone()),
            env,
            exposed_ports: ports.into_iter().collect(),
        }
    }
}

/// A container image bound to the commit.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct ContainerImage {
    pub name: String,
    pub tag: String,
    pub source: ImageSource,
    pub add_files: Vec<AddFile>,
    pub postprocess: Vec<Script>,
    pub config: ImageConfig,
    /// `FILE: container-images[i]`, for messages.
    #[serde(skip)]
    pub origin: String,
}

impl ContainerImage {
    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// Where the image lives in the commit, relative to the root.
    pub fn dir(&self) -> String {
        format!("{IMAGES_DIR}/{}/{}", self.name, self.tag)
    }
}

/// Where bound images live in a commit: `IMAGES_DIR/NAME/TAG/rootfs`.
pub const IMAGES_DIR: &str = "usr/lib/slipway/images";

/// A published port: `[IP:]HOST:CONTAINER[/tcp|/udp]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Port {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub host_ip: Option<String>,
    pub host: u16,
    pub container: u16,
    pub protocol: String,
}

impl Port {
    pub fn parse(s: &str) -> std::result::Result<Port, String> {
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((r, p)) if p == "tcp" || p == "udp" => (r, p.to_string()),
            Some((_, p)) => return Err(format!("protocol `{p}` is not tcp or udp")),
            None => (s, "tcp".to_string()),
        };
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        let num = |p: &str, what: &str| -> std::result::Result<u16, String> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("{what} port `{p}` is not a number from 1 to 65535")),
            }
        };
        match parts.as_slice() {
            [container, host] => Ok(Port {
                host_ip: None,
                host: num(host, "host")?,
                container: num(container, "container")?,
                protocol,
            }),
            [container, host, ip] => {
                ip.parse::<std::net::IpAddr>()
                    .map_err(|_| format!("`{ip}` is not an IP address"))?;
                Ok(Port {
                    host_ip: Some(ip.to_string()),
                    host: num(host, "host")?,
                    container: num(container, "container")?,
                    protocol,
                })
            }
            _ => Err("is not HOST:CONTAINER, IP:HOST:CONTAINER (optionally /tcp or /udp)".into()),
        }
    }

    /// docker's `-p` value.
    pub fn docker_arg(&self) -> String {
        match &self.host_ip {
            Some(ip) => format!("{ip}:{}:{}/{}", self.host, self.container, self.protocol),
            None => format!("{}:{}/{}", self.host, self.container, self.protocol),
        }
    }
}

/// A bind mount: a host directory under /var, a path in the container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Volume {
    pub host: String,
    pub container: String,
    pub read_only: bool,
}

impl Volume {
    pub fn parse(key: &str, s: &str) -> Result<Volume> {
        let parts: Vec<&str> = s.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [h, c] => (*h, *c, false),
            [h, c, "ro"] => (*h, *c, true),
            [h, c, "rw"] => (*h, *c, false),
            _ => bail!("{key}: `{s}` is not HOST-PATH:CONTAINER-PATH[:ro]"),
        };
        if !host.starts_with('/') || !container.starts_with('/') {
            bail!("{key}: `{s}`: both paths must be absolute");
        }
        let rel = crate::sys::tree::check_path(key, host)?;
        if !rel.starts_with("var/") {
            bail!(
                "{key}: `{host}` is not under /var: on an OSTree host everything else is the \
                 read-only commit or /etc, so a service's data lives under /var"
            );
        }
        crate::sys::tree::check_path(key, container)?;
        Ok(Volume {
            host: format!("/{rel}"),
            container: container.to_string(),
            read_only,
        })
    }

    pub fn docker_arg(&self) -> String {
        let ro = if self.read_only { ":ro" } else { "" };
        format!("{}:{}{ro}", self.host, self.container)
    }
}

/// What systemd's `Restart=` takes.
pub const RESTART_VALUES: [&str; 7] = [
    "no",
    "always",
    "on-success",
    "on-failure",
    "on-abnormal",
    "on-abort",
    "on-watchdog",
];

/// A container the host runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Service {
    pub name: String,
    /// `name:tag` of a bound image.
    pub image: String,
    /// Arguments after the image (the image's CMD when empty).
    pub command: Vec<String>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Volume>,
    pub environment: BTreeMap<String, String>,
    pub restart: String,
    pub needs: Vec<String>,
    #[serde(skip)]
    pub origin: String,
}

impl Service {
    /// The systemd unit that runs it.
    pub fn unit(&self) -> String {
        format!("{}.service", self.name)
    }
}

/// Docker repository names slipway binds: lower case components, no registry host, no
/// slashes (the name is a directory of the commit).
fn check_image_name(n: &str) -> std::result::Result<(), &'static str> {
    let ok = !n.is_empty()
        && n.len() <= 128
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && !n.contains("..");
    if ok {
        Ok(())
    } else {
        Err(
            "is not an image name (lower case letters, digits, `.`, `_`, `-`, starting and ending with a letter or digit)",
        )
    }
}

/// Docker tags: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(t: &str) -> std::result::Result<(), &'static str> {
    let ok = !t.is_empty()
        && t.len() <= 128
        && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(
            "is not a docker tag (letters, digits, `_`, `.`, `-`, at most 128, not starting with `.` or `-`)",
        )
    }
}

/// Service names become container and unit names.
fn check_service_name(n: &str) -> std::result::Result<(), &'static str> {
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && !n.ends_with(".service");
    if ok {
        Ok(())
    } else {
        Err(
            "is not a service name (letters, digits, `_`, `.`, `-`, starting with a letter or digit; it names the container and NAME.service)",
        )
    }
}

fn check_env(key: &str, env: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in env {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            bail!("{key}: `{k}` is not an environment variable name");
        }
        if v.contains(['\n', '\0']) {
            bail!("{key}.{k}: a value cannot hold a newline or NUL");
        }
    }
    Ok(())
}

/// The runtime settings of an image entry.
pub fn image_config(key: &str, raw: &RawImage) -> Result<ImageConfig> {
    let env = raw.env.clone().unwrap_or_default();
    check_env(&format!("{key}.env"), &env)?;
    if let Some(w) = &raw.workdir
        && !w.starts_with('/')
    {
        bail!("{key}.workdir: `{w}` must be absolute");
    }
    for (what, v) in [("entrypoint", &raw.entrypoint), ("cmd", &raw.cmd)] {
        if let Some(v) = v
            && v.is_empty()
        {
            bail!("{key}.{what}: empty (leave the key out instead)");
        }
    }
    if raw.exposed_ports.as_ref().is_some_and(|p| p.contains(&0)) {
        bail!("{key}.exposed-ports: 0 is not a port");
    }
    Ok(ImageConfig {
        user: raw.user.clone(),
        workdir: raw.workdir.clone(),
        entrypoint: raw.entrypoint.clone(),
        cmd: raw.cmd.clone(),
        env,
        exposed_ports: raw.exposed_ports.clone().unwrap_or_default(),
    })
}

/// Check name and tag of an image entry (`key` is `FILE: container-images[i]`).
pub fn check_image_names(key: &str, raw: &RawImage) -> Result<()> {
    check_image_name(&raw.name).map_err(|why| anyhow!("{key}.name: `{}` {why}", raw.name))?;
    check_tag(&raw.tag).map_err(|why| anyhow!("{key}.tag: `{}` {why}", raw.tag))?;
    match (&raw.packages, &raw.archive) {
        (Some(_), Some(_)) => bail!(
            "{key} ({}:{}): give either `packages` or `archive`, not both",
            raw.name,
            raw.tag
        ),
        (None, None) => bail!(
            "{key} ({}:{}): neither `packages` nor `archive`: nothing to build the image from",
            raw.name,
            raw.tag
        ),
        (Some(p), None) if p.is_empty() => {
            bail!("{key}.packages ({}:{}): empty", raw.name, raw.tag)
        }
        _ => {}
    }
    if raw.archive.is_some() && raw.repos.is_some() {
        bail!(
            "{key}.repos ({}:{}): only an image built from packages has apt repositories",
            raw.name,
            raw.tag
        );
    }
    Ok(())
}

/// A service entry, on its own.
pub fn service(key: &str, raw: RawService) -> Result<Service> {
    check_service_name(&raw.name).map_err(|why| anyhow!("{key}.name: `{}` {why}", raw.name))?;
    let key = format!("{key} (service {})", raw.name);
    match raw.image.split_once(':') {
        Some((n, t)) if check_image_name(n).is_ok() && check_tag(t).is_ok() => {}
        _ => bail!(
            "{key}.image: `{}` is not NAME:TAG of an image in container-images",
            raw.image
        ),
    }
    let mut ports = Vec::new();
    for (i, p) in raw.ports.unwrap_or_default().iter().enumerate() {
        ports.push(Port::parse(p).map_err(|why| anyhow!("{key}.ports[{i}]: `{p}` {why}"))?);
    }
    let mut volumes = Vec::new();
    for (i, v) in raw.volumes.unwrap_or_default().iter().enumerate() {
        volumes.push(Volume::parse(&format!("{key}.volumes[{i}]"), v)?);
    }
    let environment = raw.environment.unwrap_or_default();
    check_env(&format!("{key}.environment"), &environment)?;
    let restart = raw.restart.unwrap_or_else(|| "on-failure".into());
    if !RESTART_VALUES.contains(&restart.as_str()) {
        bail!(
            "{key}.restart: `{restart}` is not one of {} (systemd's Restart=; docker's own restart policies stay off)",
            RESTART_VALUES.join(", ")
        );
    }
    Ok(Service {
        name: raw.name,
        image: raw.image,
        command: raw.command.unwrap_or_default(),
        ports,
        volumes,
        environment,
        restart,
        needs: raw.needs.unwrap_or_default(),
        origin: key,
    })
}

/// The checks across entries, once every include is merged (`top`: the top treefile, for
/// messages).
pub fn check_all(top: &str, images: &[ContainerImage], services: &[Service]) -> Result<()> {
    let mut refs = BTreeMap::new();
    for img in images {
        if let Some(first) = refs.insert(img.reference(), &img.origin) {
            bail!(
                "{}: image {} is bound twice (also in {first})",
                img.origin,
                img.reference()
            );
        }
    }
    let mut names = BTreeMap::new();
    let mut ports: BTreeMap<(String, u16), &str> = BTreeMap::new();
    for s in services {
        if let Some(first) = names.insert(s.name.as_str(), &s.origin) {
            bail!(
                "{}: service {} is defined twice (also in {first})",
                s.origin,
                s.name
            );
        }
        if !refs.contains_key(&s.image) {
            let bound: Vec<&String> = refs.keys().collect();
            bail!(
                "{}: service {} runs image {}, which the treefile does not bind (container-images has: {})",
                s.origin,
                s.name,
                s.image,
                if bound.is_empty() {
                    "nothing".to_string()
                } else {
                    bound
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
        }
        for p in &s.ports {
            if let Some(other) = ports.insert((p.protocol.clone(), p.host), &s.name) {
                bail!(
                    "{}: services {other} and {} both publish host port {}/{}",
                    s.origin,
                    s.name,
                    p.host,
                    p.protocol
                );
            }
        }
    }
    for s in services {
        for n in &s.needs {
            if !names.contains_key(n.as_str()) {
                bail!(
                    "{}.needs: `{n}` is not a service of this treefile",
                    s.origin
                );
            }
        }
    }
    // needs must not loop: systemd would drop one of the units to break the cycle.
    let graph: BTreeMap<&str, &Vec<String>> = services
        .iter()
        .map(|s| (s.name.as_str(), &s.needs))
        .collect();
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, &'a Vec<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> std::result::Result<(), String> {
        if let Some(pos) = path.iter().position(|p| *p == n) {
            let mut cycle: Vec<&str> = path[pos..].to_vec();
            cycle.push(n);
            return Err(cycle.join(" -> "));
        }
        if done.contains(n) {
            return Ok(());
        }
        path.push(n);
        for m in graph.get(n).map(|v| v.as_slice()).unwrap_or_default() {
            visit(m, graph, path, done)?;
        }
        path.pop();
        done.insert(n);
        Ok(())
    }
    let mut done = BTreeSet::new();
    for s in services {
        visit(&s.name, &graph, &mut Vec::new(), &mut done)
            .map_err(|c| anyhow!("{top}: services: `needs` goes round in a circle: {c}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_and_bad_ones_say_why() {
        let p = Port::parse("8080:80").unwrap();
        assert_eq!(
            (p.host, p.container, p.protocol.as_str()),
            (8080, 80, "tcp")
        );
        assert_eq!(p.docker_arg(), "8080:80/tcp");
        let p = Port::parse("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(p.docker_arg(), "127.0.0.1:53:5353/udp");
        for (bad, why) in [
            ("80", "is not HOST:CONTAINER"),
            ("0:80", "host port `0`"),
            ("8080:x", "container port `x`"),
            ("1.2.3:80:80", "not an IP address"),
            ("80:80/sctp", "not tcp or udp"),
        ] {
            let e = Port::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn volumes_live_under_var() {
        let v = Volume::parse("k", "/var/lib/web:/data:ro").unwrap();
        assert_eq!(v.docker_arg(), "/var/lib/web:/data:ro");
        for bad in [
            "/etc/web:/data",
            "var/x:/data",
            "/var/../etc:/d",
            "/var/x",
            "/var:/d",
        ] {
            assert!(Volume::parse("k", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_tags() {
        assert!(check_image_name("web").is_ok());
        assert!(check_image_name("keystone-api.v2").is_ok());
        for bad in ["Web", "a/b", "-x", "x-", "", "a..b"] {
            assert!(check_image_name(bad).is_err(), "{bad}");
        }
        assert!(check_tag("v1").is_ok());
        assert!(check_tag("22.0.0-1_deb12").is_ok());
        for bad in [".x", "-x", "a:b", ""] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        assert!(check_service_name("web").is_ok());
        assert!(check_service_name("web.service").is_err());
        assert!(check_service_name("a b").is_err());
    }
}
