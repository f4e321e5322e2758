//! The update agent: `slipway host update-agent`, run by `slipway-update-agent.timer` (not
//! enabled by default). It looks for an update of the booted deployment's refspec and,
//! as its policy says, only reports it, downloads it, or deploys it and reboots into it,
//! inside the reboot windows and, when a FleetLock server is configured, only with a
//! reboot slot from that server.
//!
//! **Settings**: the deployment's `/usr/lib/slipway/updates.json` (shipped by compose), then
//! the operator's `/etc/slipway/updates.json` key by key; keys starting with `//` are
//! comments (see [`UpdateSettings`]).
//!
//! **The agent is a state machine** ([`State`], zincati style): every state is documented
//! below and every transition is made in one place, [`Machine::step`], which does each
//! state's one action through the [`Env`] trait (check, download, deploy, FleetLock,
//! reboot, clock) and says what comes next ([`Next`]): go on now, wait, or the pass is
//! over. The tests drive it with a scripted `Env`; [`run`] drives it on a real sysroot
//! with the host library ([`crate::host::upgrade::upgrade`], [`crate::host::reboot`]).
//!
//! ```text
//! Start ─(apply, an update deployed and not booted)──────────────────────▶ Deployed
//!   │                                                                         │
//!   ▼                                                 outside every window: wait
//! Checking ─up to date / rejected / older─▶ end       inside (or no windows) ▼
//!   │ newer                                           FleetLock configured: Locking
//!   ▼                                                   refused: back off, Deployed
//! Available ─check─▶ end                                granted ▼
//!   │ stage: download ─▶ end                          Rebooting ─▶ end
//!   │ apply: download ▼
//! Downloaded ─deploy─▶ Deployed
//!
//! any failed action: back off, then Start again (with --once: end, status 1)
//! ```
//!
//! `--once` does one pass (a pass with policy `apply` goes on until the reboot, waiting for
//! the window and the reboot slot as long as it takes); without it the agent starts a new
//! pass an hour after each one ends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::fleetlock::{self, Answer, Backoff};
use super::upgrade::{UpgradeOptions, UpgradeOutcome, downgrade_reason, upgrade};
use super::{Access, CommitInfo, Host};
use crate::sys::time::utc;

/// Where the two settings files live, relative to a deployment's root.
pub const SHIPPED: &str = crate::payload::UPDATE_SETTINGS;
pub const OPERATOR: &str = "etc/slipway/updates.json";
/// The journal's MESSAGE_ID of the agent's findings (update available, downloaded,
/// rebooting into it, waiting for a slot, failures).
pub const UPDATE_ID: &str = "c1f29a1192ab49d2ad88f7a472f08e3a";
/// The last thing the agent did or waits for, in the run directory (`/run/slipway`).
pub const STATUS_FILE: &str = "update-agent.json";
/// Without `--once`: the pause between two passes.
pub const PASS_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest single sleep while waiting for a reboot window: the window is computed
/// again after it, so a clock that jumps (NTP, a suspended VM) is followed.
const MAX_WINDOW_SLEEP: u64 = 3600;

const MINUTES_PER_DAY: u32 = 24 * 60;
const SECS_PER_DAY: u64 = 24 * 3600;
const SECS_PER_WEEK: u64 = 7 * SECS_PER_DAY;
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const FULL_DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// What the agent does with an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Say that one is available (journal, status file); change nothing.
    Check,
    /// Download it (`upgrade --download-only`); a person deploys it.
    Stage,
    /// Deploy it and reboot into it (inside a reboot window, with a FleetLock slot).
    Apply,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Check => "check",
            Policy::Stage => "stage",
            Policy::Apply => "apply",
        }
    }
}

/// When the agent may reboot: on each of `days`, from `start` for `length` minutes (UTC). A
/// window may run past midnight into the next day (and past Sunday into Monday).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebootWindow {
    /// 0 is Monday.
    pub days: Vec<u8>,
    /// Minutes after midnight.
    pub start: u32,
    /// 1 to a week (10080).
    pub length: u32,
}

/// The agent's settings (`updates.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateSettings {
    /// `policy`: `check` (the default), `stage` or `apply`.
    pub policy: Policy,
    /// `reboot-windows`: `[{"days": ["Mon", ...], "start": "HH:MM", "length-minutes": N}]`;
    /// empty (the default): any time.
    pub reboot_windows: Vec<RebootWindow>,
    /// `fleetlock-url`: a FleetLock server's base URL (`http://` only); `null` or absent:
    /// none.
    pub fleetlock_url: Option<String>,
    /// `fleetlock-group`: the reboot group (`default`).
    pub fleetlock_group: String,
    /// `fleetlock-ca`: the CA file (PEM, a path of the host) an `https://` FleetLock server
    /// is checked against; absent: the machine's CA certificates.
    pub fleetlock_ca: Option<String>,
    /// `backoff-secs` (30) and `max-backoff-secs` (900): the delay after a refused reboot
    /// slot or a failed action, doubling each time up to the maximum.
    pub backoff_secs: u64,
    pub max_backoff_secs: u64,
}

impl Default for UpdateSettings {
    fn default() -> Self {
        UpdateSettings {
            policy: Policy::Check,
            reboot_windows: Vec::new(),
            fleetlock_url: None,
            fleetlock_group: fleetlock::DEFAULT_GROUP.to_string(),
            fleetlock_ca: None,
            backoff_secs: 30,
            max_backoff_secs: 900,
        }
    }
}

/// One file's keys (all optional; unknown keys refused).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Layer {
    policy: Option<Policy>,
    reboot_windows: Option<Vec<WindowLayer>>,
    /// `null` (no server) or a URL: both differ from absent.
    #[serde(default, deserialize_with = "present")]
    fleetlock_url: Option<serde_json::Value>,
    fleetlock_group: Option<String>,
    fleetlock_ca: Option<String>,
    backoff_secs: Option<u64>,
    max_backoff_secs: Option<u64>,
}

/// A key that is there, even as `null` (serde reads `null` as an absent `Option`).
fn present<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<serde_json::Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// One element of `reboot-windows` as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct WindowLayer {
    days: Vec<String>,
    start: String,
    length_minutes: u64,
}

impl UpdateSettings {
    /// The settings of the deployment rooted at `root`.
    pub fn load(root: &Path) -> Result<UpdateSettings> {
        const WHAT: &str = "update settings";
        let mut s = UpdateSettings::default();
        for (file, l) in
            crate::host::load_layered::<Layer>(root, [SHIPPED, OPERATOR], WHAT, &["fleetlock-url"])?
        {
            s.apply(l)
                .with_context(|| format!("{}: invalid {WHAT}", file.display()))?;
        }
        Ok(s)
    }

    /// The FleetLock client these settings describe for the deployment rooted at `root`
    /// (its machine id; `fleetlock-ca` read inside it); `None` without a URL.
    pub fn fleetlock_client(&self, root: &Path) -> Result<Option<fleetlock::Client>> {
        let Some(url) = &self.fleetlock_url else {
            return Ok(None);
        };
        let ca = match &self.fleetlock_ca {
            Some(p) => {
                let what = format!("`fleetlock-ca` {p}");
                let pem = crate::sys::tree::Tree::open(root)?.read_named(&what, p)?;
                Some(crate::sys::http::parse_ca(&pem, &what)?)
            }
            None => None,
        };
        Ok(Some(fleetlock::Client::new(
            url,
            &fleetlock::machine_client_id(root)?,
            &self.fleetlock_group,
            ca,
        )?))
    }

    fn apply(&mut self, l: Layer) -> Result<()> {
        if let Some(p) = l.policy {
            self.policy = p;
        }
        if let Some(list) = l.reboot_windows {
            self.reboot_windows = list
                .iter()
                .enumerate()
                .map(|(i, w)| check_window(&format!("reboot-windows[{i}]"), w))
                .collect::<Result<_>>()?;
        }
        if let Some(v) = l.fleetlock_url {
            self.fleetlock_url = match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(u) => {
                    fleetlock::check_base_url(&u).context("`fleetlock-url`")?;
                    Some(u)
                }
                _ => bail!("`fleetlock-url` must be an http(s):// URL or null, not {v}"),
            }
        }
        if let Some(g) = l.fleetlock_group {
            fleetlock::check_group(&g).context("`fleetlock-group`")?;
            self.fleetlock_group = g;
        }
        if let Some(ca) = l.fleetlock_ca {
            if !ca.starts_with('/') {
                bail!("`fleetlock-ca` must be an absolute path of the host, not `{ca}`");
            }
            crate::sys::tree::check_path("`fleetlock-ca`", &ca)?;
            self.fleetlock_ca = Some(ca);
        }
        for (key, value, slot) in [
            ("backoff-secs", l.backoff_secs, &mut self.backoff_secs),
            (
                "max-backoff-secs",
                l.max_backoff_secs,
                &mut self.max_backoff_secs,
            ),
        ] {
            if let Some(n) = value {
                if !(1..=SECS_PER_DAY).contains(&n) {
                    bail!("`{key}` must be a whole number of seconds from 1 to 86400, not {n}");
                }
                *slot = n;
            }
        }
        if self.max_backoff_secs < self.backoff_secs {
            bail!(
                "`max-backoff-secs` ({}) is less than `backoff-secs` ({})",
                self.max_backoff_secs,
                self.backoff_secs
            );
        }
        Ok(())
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_secs(self.backoff_secs),
            Duration::from_secs(self.max_backoff_secs),
        )
    }
}

/// One element of `reboot-windows`, checked; `at` names it in errors (`reboot-windows[1]`).
fn check_window(at: &str, w: &WindowLayer) -> Result<RebootWindow> {
    if w.days.is_empty() {
        bail!("`{at}.days` must be a list of days (\"Mon\"...), not empty");
    }
    let mut days = Vec::new();
    for (i, day) in w.days.iter().enumerate() {
        days.push(parse_day(day).with_context(|| {
            format!(
                "`{at}.days[{i}]` must be one of {} (or the full name), not {day:?}",
                DAY_NAMES.join(", ")
            )
        })?);
    }
    days.sort();
    days.dedup();
    let start = parse_hhmm(&w.start).with_context(|| {
        format!(
            "`{at}.start` must be \"HH:MM\" (00:00 to 23:59, UTC), not {:?}",
            w.start
        )
    })?;
    let length = u32::try_from(w.length_minutes)
        .ok()
        .filter(|n| (1..=7 * MINUTES_PER_DAY).contains(n))
        .with_context(|| format!("`{at}.length-minutes` must be from 1 to 10080 (a week)"))?;
    Ok(RebootWindow {
        days,
        start,
        length,
    })
}

fn parse_day(s: &str) -> Option<u8> {
    let l = s.to_ascii_lowercase();
    (0u8..7).find(|&i| {
        DAY_NAMES[usize::from(i)].eq_ignore_ascii_case(&l) || FULL_DAY_NAMES[usize::from(i)] == l
    })
}

fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Seconds since Monday 00:00 UTC of the week of `unix` (1970-01-01 was a Thursday).
fn second_of_week(unix: u64) -> u64 {
    ((unix / SECS_PER_DAY + 3) % 7) * SECS_PER_DAY + unix % SECS_PER_DAY
}

/// 0 when a reboot is allowed at `unix` (no windows, or inside one); else the seconds until
/// the next window opens.
pub fn secs_until_window(windows: &[RebootWindow], unix: u64) -> u64 {
    let now = second_of_week(unix);
    windows
        .iter()
        .flat_map(|w| {
            w.days.iter().map(move |&d| {
                let start = u64::from(d) * SECS_PER_DAY + u64::from(w.start) * 60;
                let since = (now + SECS_PER_WEEK - start) % SECS_PER_WEEK;
                if since < u64::from(w.length) * 60 {
                    0
                } else {
                    (start + SECS_PER_WEEK - now) % SECS_PER_WEEK
                }
            })
        })
        .min()
        .unwrap_or(0)
}

/// A commit the agent found or acts on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Update {
    pub commit: String,
    pub version: Option<String>,
}

impl From<CommitInfo> for Update {
    fn from(c: CommitInfo) -> Update {
        Update {
            commit: c.checksum,
            version: c.version,
        }
    }
}

impl std::fmt::Display for Update {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{} (version {v})", self.commit),
            None => write!(f, "{}", self.commit),
        }
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    UpToDate,
    /// Newer than the default deployment.
    Newer(Update),
    /// There is another commit, but the agent never deploys it (older than the default,
    /// or rejected by the health gate on this host); `why` says which.
    NotForUs {
        update: Update,
        why: String,
    },
}

/// What the agent needs from the host: the actions of the states, and the clock.
pub trait Env {
    /// An update that is deployed as the default but not booted: a newer commit than the
    /// booted one, waiting for its reboot.
    fn pending(&mut self) -> Result<Option<Update>>;
    /// Is there a newer commit? (`upgrade --check`)
    fn check(&mut self) -> Result<Found>;
    /// Download the newest commit (`upgrade --download-only`); `None`: nothing newer.
    fn download(&mut self) -> Result<Option<Update>>;
    /// Deploy the newest commit as the default (`upgrade`); `None`: nothing newer.
    fn deploy(&mut self) -> Result<Option<Update>>;
    /// Ask the FleetLock server for a reboot slot.
    fn pre_reboot(&mut self) -> Result<Answer>;
    /// Reboot into `update`.
    fn reboot(&mut self, update: &Update) -> Result<()>;
    /// Seconds since the epoch.
    fn now(&self) -> u64;
}

/// The agent's states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A pass begins. With policy `apply`, an update already deployed and waiting for its
    /// reboot (by an earlier pass that could not reboot yet, or by hand) goes straight to
    /// [`State::Deployed`]; otherwise look for one.
    Start,
    /// Ask the remote whether a newer commit exists (its metadata only).
    Checking,
    /// A newer commit exists. `check` reports it and ends the pass; `stage` downloads it and
    /// ends the pass; `apply` downloads it.
    Available(Update),
    /// `apply`: the commit is in the sysroot repository; deploy it as the new default.
    Downloaded(Update),
    /// `apply`: the update is the default and waits for its reboot: inside a reboot window
    /// (or without windows) go on; outside, wait until the next window opens.
    Deployed(Update),
    /// Inside a reboot window with a FleetLock server: ask for a reboot slot. Refused (or
    /// the server cannot be reached): back off, then back to `Deployed` (the window may
    /// have closed meanwhile).
    Locking(Update),
    /// The reboot is allowed (and the slot is ours): reboot.
    Rebooting(Update),
}

/// Why the agent waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitFor {
    /// Outside every reboot window.
    RebootWindow,
    /// The FleetLock server gave no slot (why).
    FleetLock(String),
    /// An action failed (the error); the pass starts again after the wait.
    Retry(String),
}

/// How a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    UpToDate,
    /// `check`: a newer commit is available.
    Available(Update),
    /// A commit the agent does not deploy (see [`Found::NotForUs`]).
    NotApplied {
        update: Update,
        why: String,
    },
    /// `stage`: downloaded, not deployed.
    Staged(Update),
    /// `apply`: deployed, and the reboot was asked for.
    Rebooted(Update),
}

/// What comes after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Step again at once.
    Now,
    /// Step again after `secs`.
    Wait { secs: u64, why: WaitFor },
    /// The pass is over (the state is [`State::Start`] again).
    End(Outcome),
}

/// The state machine: its state, its settings, and the two backoffs (refused reboot slots;
/// failed actions), which count failures in a row.
#[derive(Debug, Clone)]
pub struct Machine {
    pub state: State,
    policy: Policy,
    windows: Vec<RebootWindow>,
    fleetlock: bool,
    lock_backoff: Backoff,
    retry_backoff: Backoff,
}

impl Machine {
    pub fn new(s: &UpdateSettings) -> Machine {
        Machine {
            state: State::Start,
            policy: s.policy,
            windows: s.reboot_windows.clone(),
            fleetlock: s.fleetlock_url.is_some(),
            lock_backoff: s.backoff(),
            retry_backoff: s.backoff(),
        }
    }

    /// Do the current state's action and move to the next state: every transition of the
    /// agent is here.
    pub fn step(&mut self, env: &mut dyn Env) -> Next {
        use State::*;
        let state = std::mem::replace(&mut self.state, Start);
        let (state, next) = match state {
            Start if self.policy == Policy::Apply => match env.pending() {
                Ok(Some(u)) => (Deployed(u), Next::Now),
                Ok(None) => (Checking, Next::Now),
                Err(e) => self.failed(e),
            },
            Start => (Checking, Next::Now),
            Checking => match env.check() {
                Ok(Found::UpToDate) => self.end(Outcome::UpToDate),
                Ok(Found::NotForUs { update, why }) => {
                    self.end(Outcome::NotApplied { update, why })
                }
                Ok(Found::Newer(u)) if self.policy == Policy::Check => {
                    self.end(Outcome::Available(u))
                }
                Ok(Found::Newer(u)) => (Available(u), Next::Now),
                Err(e) => self.failed(e),
            },
            Available(_) => match env.download() {
                Ok(None) => self.end(Outcome::UpToDate),
                Ok(Some(u)) if self.policy == Policy::Stage => self.end(Outcome::Staged(u)),
                Ok(Some(u)) => (Downloaded(u), Next::Now),
                Err(e) => self.failed(e),
            },
            Downloaded(_) => match env.deploy() {
                Ok(None) => self.end(Outcome::UpToDate),
                Ok(Some(u)) => (Deployed(u), Next::Now),
                Err(e) => self.failed(e),
            },
            Deployed(u) => match secs_until_window(&self.windows, env.now()) {
                0 if self.fleetlock => (Locking(u), Next::Now),
                0 => (Rebooting(u), Next::Now),
                secs => (
                    Deployed(u),
                    Next::Wait {
                        secs,
                        why: WaitFor::RebootWindow,
                    },
                ),
            },
            Locking(u) => {
                let why = match env.pre_reboot() {
                    Ok(Answer::Granted) => {
                        self.lock_backoff.reset();
                        self.state = Rebooting(u);
                        return Next::Now;
                    }
                    Ok(Answer::Denied(d)) => format!("no reboot slot: {d}"),
                    Err(e) => format!("{e:#}"),
                };
                let secs = self.lock_backoff.fail().as_secs();
                (
                    Deployed(u),
                    Next::Wait {
                        secs,
                        why: WaitFor::FleetLock(why),
                    },
                )
            }
            Rebooting(u) => match env.reboot(&u) {
                Ok(()) => self.end(Outcome::Rebooted(u)),
                Err(e) => self.failed(e),
            },
        };
        self.state = state;
        next
    }

    fn end(&mut self, o: Outcome) -> (State, Next) {
        self.retry_backoff.reset();
        (State::Start, Next::End(o))
    }

    fn failed(&mut self, e: anyhow::Error) -> (State, Next) {
        let secs = self.retry_backoff.fail().as_secs();
        (
            State::Start,
            Next::Wait {
                secs,
                why: WaitFor::Retry(format!("{e:#}")),
            },
        )
    }
}

/// What the agent last did or waits for (`/run/slipway/update-agent.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AgentStatus {
    /// When (ISO 8601, UTC).
    pub at: String,
    pub policy: String,
    /// `up-to-date`, `available`, `not-applied`, `staged`, `rebooting`,
    /// `waiting-for-reboot-window`, `waiting-for-fleetlock`, `retrying`.
    pub state: String,
    pub update: Option<Update>,
    pub message: String,
    /// Until when it waits.
    pub until: Option<String>,
}

/// Options of `slipway host update-agent`.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub sysroot: PathBuf,
    /// One pass, then exit.
    pub once: bool,
    /// Where the status file goes.
    pub run_dir: PathBuf,
}

/// The agent's [`Env`] on a sysroot: each action opens (and locks, when it writes) the
/// sysroot and lets it go again, so waits hold no lock.
struct HostEnv {
    sysroot: PathBuf,
    client: Option<fleetlock::Client>,
}

impl HostEnv {
    fn upgrade(&self, opts: UpgradeOptions) -> Result<UpgradeOutcome> {
        let host = Host::open(&self.sysroot, Access::Write)?;
        upgrade(&host, None, opts)
    }
}

impl Env for HostEnv {
    fn pending(&mut self) -> Result<Option<Update>> {
        let host = Host::open(&self.sysroot, Access::Read)?;
        let Some(booted) = host.booted() else {
            return Ok(None);
        };
        let default = host.default_of(booted.osname().as_str())?;
        if default.equal(&booted) {
            return Ok(None);
        }
        let (b, d) = (
            host.commit_info(&booted.csum())?,
            host.commit_info(&default.csum())?,
        );
        // Not an update: the same commit deployed anew, or an older one (a rollback).
        if b.checksum == d.checksum || downgrade_reason(&b, &d).is_some() {
            return Ok(None);
        }
        Ok(Some(d.into()))
    }

    fn check(&mut self) -> Result<Found> {
        Ok(
            match self.upgrade(UpgradeOptions {
                check: true,
                ..Default::default()
            })? {
                UpgradeOutcome::UpToDate(_) => Found::UpToDate,
                UpgradeOutcome::Available {
                    new,
                    downgrade: None,
                    ..
                } => Found::Newer(new.into()),
                UpgradeOutcome::Available {
                    new,
                    downgrade: Some(why),
                    current,
                } => Found::NotForUs {
                    update: new.into(),
                    why: format!("older than the deployed {current}: {why}"),
                },
                UpgradeOutcome::Rejected { new, rejection } => Found::NotForUs {
                    update: new.into(),
                    why: format!(
                        "rejected by the health gate at {}: {}",
                        rejection.at, rejection.reason
                    ),
                },
                other => bail!("upgrade --check answered {other:?}"),
            },
        )
    }

    fn download(&mut self) -> Result<Option<Update>> {
        match self.upgrade(UpgradeOptions {
            download_only: true,
            ..Default::default()
        })? {
            UpgradeOutcome::Downloaded { new, .. } => Ok(Some(new.into())),
            UpgradeOutcome::UpToDate(_) | UpgradeOutcome::Rejected { .. } => Ok(None),
            other => bail!("upgrade --download-only answered {other:?}"),
        }
    }

    fn deploy(&mut self) -> Result<Option<Update>> {
        match self.upgrade(UpgradeOptions::default())? {
            UpgradeOutcome::Deployed(d) => Ok(Some(d.default.into())),
            UpgradeOutcome::UpToDate(_) | UpgradeOutcome::Rejected { .. } => Ok(None),
            other => bail!("upgrade answered {other:?}"),
        }
    }

    fn pre_reboot(&mut self) -> Result<Answer> {
        match &self.client {
            Some(c) => c.pre_reboot(),
            None => Ok(Answer::Granted),
        }
    }

    fn reboot(&mut self, update: &Update) -> Result<()> {
        journal(
            5,
            &format!("slipway update agent: rebooting into {update}"),
            "rebooting",
            Some(update),
        );
        super::reboot()
    }

    fn now(&self) -> u64 {
        unix_now()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn journal(priority: u8, message: &str, state: &str, update: Option<&Update>) {
    let commit = update.map(|u| u.commit.as_str()).unwrap_or_default();
    super::health::journal::send(
        UPDATE_ID,
        priority,
        message,
        &[
            ("SLIPWAY_UPDATE_STATE", state),
            ("SLIPWAY_UPDATE_COMMIT", commit),
        ],
    );
}

/// The root of the deployment whose settings apply: the booted one, else (an offline
/// sysroot) the default of the only or first stateroot.
fn settings_root(sysroot: &Path) -> Result<PathBuf> {
    let host = Host::open(sysroot, Access::Read)?;
    let dep = match host.booted() {
        Some(b) => b,
        None => host.default_of(&host.stateroot(None)?)?,
    };
    Ok(host.deployment_root(&dep))
}

/// "30 s", "3 h 20 min", for waits.
fn human(secs: u64) -> String {
    if secs < 60 {
        return format!("{secs} s");
    }
    let (h, m) = (secs / 3600, (secs % 3600).div_ceil(60));
    match (h, m) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// `slipway host update-agent`.
/// The settings of the booted (else default) deployment, checked, and the host the agent
/// acts on (with its FleetLock client).
fn open(opts: &AgentOptions) -> Result<(UpdateSettings, HostEnv)> {
    let root = settings_root(&opts.sysroot)?;
    let settings = UpdateSettings::load(&root)?;
    if settings.policy == Policy::Apply {
        super::check_reboot_allowed(&opts.sysroot)
            .context("the update policy is `apply`, which reboots")?;
    }
    let client = settings.fleetlock_client(&root)?;
    crate::sys::ui::info(format!(
        "update agent: policy {}, {}, {}",
        settings.policy.as_str(),
        if settings.reboot_windows.is_empty() {
            "reboots at any time".to_string()
        } else {
            format!("{} reboot windows (UTC)", settings.reboot_windows.len())
        },
        match &client {
            Some(c) => format!(
                "FleetLock at {} (id {}, group {})",
                c.url(""),
                c.id(),
                c.group()
            ),
            None => "no FleetLock server".into(),
        }
    ));
    let env = HostEnv {
        sysroot: opts.sysroot.clone(),
        client,
    };
    Ok((settings, env))
}

/// What a pass's outcome is called in the status file, its update, the message, and the
/// journal priority.
fn describe(outcome: &Outcome) -> (&'static str, Option<&Update>, String, u8) {
    match outcome {
        Outcome::UpToDate => ("up-to-date", None, "up to date".to_string(), 6),
        Outcome::Available(u) => (
            "available",
            Some(u),
            format!("update available: {u} (policy check: not downloaded)"),
            5,
        ),
        Outcome::NotApplied { update, why } => (
            "not-applied",
            Some(update),
            format!("not applying {update}: {why}"),
            4,
        ),
        Outcome::Staged(u) => (
            "staged",
            Some(u),
            format!(
                "update downloaded: {u} (policy stage: deploy it with \
                 `slipway host upgrade`)"
            ),
            5,
        ),
        Outcome::Rebooted(u) => ("rebooting", Some(u), format!("rebooting into {u}"), 5),
    }
}

/// Where the agent says what it does: the status file in the run directory, the journal,
/// stderr.
struct Reporter<'a> {
    run_dir: &'a Path,
    policy: Policy,
    fleetlock_url: Option<String>,
    once: bool,
}

impl Reporter<'_> {
    fn status(&self, state: &str, update: Option<&Update>, message: &str, until: Option<u64>) {
        let s = AgentStatus {
            at: super::health::now(),
            policy: self.policy.as_str().into(),
            state: state.into(),
            update: update.cloned(),
            message: message.into(),
            until: until.map(utc),
        };
        let p = self.run_dir.join(STATUS_FILE);
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        if let Err(e) = crate::sys::file::write_atomic(&p, text.as_bytes()) {
            crate::sys::ui::warn(format!("recording the update agent's status: {e:#}"));
        }
    }

    /// Say why the agent waits, then wait `secs` (a reboot window: at most
    /// [`MAX_WINDOW_SLEEP`] at a time). A failed action ends a `--once` pass with an error.
    fn wait(&self, why: WaitFor, secs: u64, update: Option<&Update>) -> Result<()> {
        let until = unix_now() + secs;
        match why {
            WaitFor::RebootWindow => {
                let msg = format!(
                    "update {} is deployed; waiting for the reboot window that opens \
                     at {} ({})",
                    update.map(|u| u.to_string()).unwrap_or_default(),
                    utc(until),
                    human(secs)
                );
                crate::sys::ui::info(&msg);
                self.status("waiting-for-reboot-window", update, &msg, Some(until));
                std::thread::sleep(Duration::from_secs(secs.min(MAX_WINDOW_SLEEP)));
            }
            WaitFor::FleetLock(why) => {
                let msg = format!(
                    "{}: {why}; asking again in {}",
                    self.fleetlock_url.as_deref().unwrap_or("FleetLock"),
                    human(secs)
                );
                journal(4, &msg, "waiting-for-fleetlock", update);
                self.status("waiting-for-fleetlock", update, &msg, Some(until));
                std::thread::sleep(Duration::from_secs(secs));
            }
            WaitFor::Retry(error) => {
                if self.once {
                    journal(
                        3,
                        &format!("slipway update agent: {error}"),
                        "failed",
                        update,
                    );
                    self.status("failed", update, &error, None);
                    bail!("update agent: {error}");
                }
                let msg = format!("{error}; trying again in {}", human(secs));
                journal(3, &format!("slipway update agent: {msg}"), "retrying", None);
                self.status("retrying", update, &msg, Some(until));
                std::thread::sleep(Duration::from_secs(secs));
            }
        }
        Ok(())
    }
}

pub fn run(opts: &AgentOptions) -> Result<()> {
    let (settings, mut env) = open(opts)?;
    let report = Reporter {
        run_dir: &opts.run_dir,
        policy: settings.policy,
        fleetlock_url: env.client.as_ref().map(|c| c.url(fleetlock::PRE_REBOOT)),
        once: opts.once,
    };
    let mut machine = Machine::new(&settings);
    loop {
        let update = match &machine.state {
            State::Available(u)
            | State::Downloaded(u)
            | State::Deployed(u)
            | State::Locking(u)
            | State::Rebooting(u) => Some(u.clone()),
            State::Start | State::Checking => None,
        };
        match machine.step(&mut env) {
            Next::Now => {}
            Next::Wait { secs, why } => report.wait(why, secs, update.as_ref())?,
            Next::End(outcome) => {
                let (state, update, msg, priority) = describe(&outcome);
                // A closed or full stdout does not stop the agent.
                let _ = crate::outln!("{msg}");
                if priority < 6 && !matches!(outcome, Outcome::Rebooted(_)) {
                    journal(
                        priority,
                        &format!("slipway update agent: {msg}"),
                        state,
                        update,
                    );
                }
                report.status(state, update, &msg, None);
                if opts.once || matches!(outcome, Outcome::Rebooted(_)) {
                    return Ok(());
                }
                std::thread::sleep(PASS_INTERVAL);
            }
        }
    }
}

/// After a green boot: give the reboot slot back, if the deployment rooted at `root` has a
/// FleetLock URL in its update settings (`/usr/lib/slipway/updates.json`,
/// `/etc/slipway/updates.json`). Retries with the settings' backoff for at most
/// [`fleetlock::STEADY_STATE_BUDGET`], then gives up with an error naming the URL: callers log it and
/// go on (a lock server that cannot be reached must not make a boot red). Without a URL,
/// does nothing.
pub fn report_steady_state(root: &Path) -> Result<()> {
    report_steady_state_within(root, fleetlock::STEADY_STATE_BUDGET)
}

/// [`report_steady_state`] with another time budget.
pub fn report_steady_state_within(root: &Path, budget: Duration) -> Result<()> {
    let s = UpdateSettings::load(root)?;
    let Some(client) = s.fleetlock_client(root)? else {
        return Ok(());
    };
    let what = format!(
        "FleetLock steady-state at {} (id {}, group {})",
        client.url(fleetlock::STEADY_STATE),
        client.id(),
        client.group()
    );
    let mut backoff = Backoff::new(
        Duration::from_secs(s.backoff_secs),
        Duration::from_secs(s.max_backoff_secs),
    );
    fleetlock::retry_until_granted(&what, || client.steady_state(), &mut backoff, budget)?;
    crate::sys::ui::info(format!("{what}: reboot slot released"));
    Ok(())
}

#[cfg(test)]
mod tests;
