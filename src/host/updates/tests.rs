use std::collections::VecDeque;

use super::*;
use anyhow::anyhow;

#[test]
fn the_shipped_settings_are_the_defaults() {
    let d = tempfile::tempdir().unwrap();
    crate::payload::write_one(d.path(), SHIPPED);
    let s = UpdateSettings::load(d.path()).unwrap();
    assert_eq!(s, UpdateSettings::default());
}
use crate::host::fleetlock::Denial;

/// 2024-01-01 00:00 UTC, a Monday.
const MONDAY: u64 = 1_704_067_200;
const H: u64 = 3600;
const D: u64 = 24 * H;

fn at(day: u64, hh: u64, mm: u64) -> u64 {
    MONDAY + day * D + hh * H + mm * 60
}

fn window(days: &[u8], start: &str, length: u32) -> RebootWindow {
    RebootWindow {
        days: days.to_vec(),
        start: parse_hhmm(start).unwrap(),
        length,
    }
}

#[test]
fn waits_read_as_people_say_them() {
    assert_eq!(human(30), "30 s");
    assert_eq!(human(90), "2 min");
    assert_eq!(human(3 * H), "3 h");
    assert_eq!(human(3 * H + 1200), "3 h 20 min");
}

#[test]
fn reboot_windows_by_day_and_past_midnight() {
    assert_eq!(secs_until_window(&[], at(2, 13, 0)), 0);
    let mon2 = [window(&[0], "02:00", 60)];
    assert_eq!(secs_until_window(&mon2, at(0, 2, 0)), 0);
    assert_eq!(secs_until_window(&mon2, at(0, 2, 59)), 0);
    assert_eq!(secs_until_window(&mon2, at(0, 3, 0)), 7 * D - H);
    assert_eq!(secs_until_window(&mon2, at(6, 23, 0)), 3 * H);
    assert_eq!(secs_until_window(&mon2, at(0, 1, 59) + 30), 30);
    // Saturday 23:30 for an hour: still open on Sunday at 00:15.
    let sat = [window(&[5], "23:30", 60)];
    assert_eq!(secs_until_window(&sat, at(6, 0, 15)), 0);
    assert_eq!(secs_until_window(&sat, at(6, 0, 30)), 7 * D - H);
    // Sunday 23:00 for two hours: runs into Monday.
    let sun = [window(&[6], "23:00", 120)];
    assert_eq!(secs_until_window(&sun, at(0, 0, 30)), 0);
    assert_eq!(secs_until_window(&sun, at(7, 0, 59)), 0);
    assert_eq!(secs_until_window(&sun, at(0, 1, 0)), 6 * D + 22 * H);
    // Several days and windows: the nearest opening.
    let w = [
        window(&[1, 3], "22:00", 30),
        window(&[2], "04:00", 10080),
        window(&[4], "01:00", 60),
    ];
    assert_eq!(secs_until_window(&w[..1], at(1, 23, 0)), 2 * D - H);
    assert_eq!(secs_until_window(&w[..1], at(2, 12, 0)), D + 10 * H);
    assert_eq!(secs_until_window(&w[2..], at(3, 22, 0)), 3 * H);
    assert_eq!(secs_until_window(&w, at(3, 21, 0)), 0); // the week-long one
}

fn load(shipped: Option<&str>, operator: &str) -> Result<UpdateSettings> {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("usr/lib/slipway")).unwrap();
    std::fs::create_dir_all(d.path().join("etc/slipway")).unwrap();
    if let Some(s) = shipped {
        std::fs::write(d.path().join(SHIPPED), s).unwrap();
    }
    std::fs::write(d.path().join(OPERATOR), operator).unwrap();
    UpdateSettings::load(d.path())
}

#[test]
fn the_operator_overrides_the_deployment_key_by_key() {
    let s = load(
        Some(
            r#"{"// ": "x", "policy": "stage", "backoff-secs": 10,
                    "fleetlock-url": "http://lock:8080", "fleetlock-group": "a",
                    "fleetlock-ca": "/etc/slipway/lock-ca.pem"}"#,
        ),
        r#"{"policy": "apply", "fleetlock-url": null, "//x": 1,
                "reboot-windows": [{"days": ["Sat", "sunday", "SUN"], "start": "23:30",
                                    "length-minutes": 90, "// why": "quiet hours"}]}"#,
    )
    .unwrap();
    assert_eq!(
        s,
        UpdateSettings {
            policy: Policy::Apply,
            reboot_windows: vec![RebootWindow {
                days: vec![5, 6],
                start: 23 * 60 + 30,
                length: 90
            }],
            fleetlock_url: None,
            fleetlock_group: "a".into(),
            fleetlock_ca: Some("/etc/slipway/lock-ca.pem".into()),
            backoff_secs: 10,
            max_backoff_secs: 900,
        }
    );
    assert_eq!(load(None, "{}").unwrap(), UpdateSettings::default());
}

#[test]
fn bad_settings_name_the_file_and_key() {
    for (text, want) in [
        (
            r#"{"policy": "reboot"}"#,
            "`policy`: unknown variant `reboot`, expected one of `check`, `stage`, `apply`",
        ),
        (
            r#"{"reboot-windows": {}}"#,
            "`reboot-windows`: invalid type: map, expected a sequence",
        ),
        (
            r#"{"reboot-windows": [{"days": ["Mon"], "start": "02:00", "length-minutes": 5}, {"days": ["Mo"], "start": "02:00", "length-minutes": 5}]}"#,
            "`reboot-windows[1].days[0]` must be one of Mon",
        ),
        (
            r#"{"reboot-windows": [{"days": [], "start": "02:00", "length-minutes": 5}]}"#,
            "`reboot-windows[0].days` must be a list",
        ),
        (
            r#"{"reboot-windows": [{"days": ["Mon"], "start": "24:00", "length-minutes": 5}]}"#,
            "`reboot-windows[0].start` must be \"HH:MM\"",
        ),
        (
            r#"{"reboot-windows": [{"days": ["Mon"], "start": "2:00", "length-minutes": 5}]}"#,
            "`reboot-windows[0].start`",
        ),
        (
            r#"{"reboot-windows": [{"days": ["Mon"], "start": "02:00", "length-minutes": 0}]}"#,
            "`reboot-windows[0].length-minutes` must be from 1 to 10080",
        ),
        (
            r#"{"reboot-windows": [{"days": ["Mon"], "start": "02:00"}]}"#,
            "`reboot-windows[0]`: missing field `length-minutes`",
        ),
        (
            r#"{"reboot-windows": [{"days": ["Mon"], "start": "02:00", "length": 5}]}"#,
            "`reboot-windows[0].length`: unknown field `length`",
        ),
        (
            r#"{"fleetlock-url": "ftp://lock"}"#,
            "`fleetlock-url`: ftp://lock is not an http(s)://",
        ),
        (
            r#"{"fleetlock-ca": "lock-ca.pem"}"#,
            "`fleetlock-ca` must be an absolute path",
        ),
        (
            r#"{"fleetlock-ca": "/etc/../x"}"#,
            "`fleetlock-ca`: `/etc/../x` contains `..`",
        ),
        (r#"{"fleetlock-url": 5}"#, "`fleetlock-url` must be"),
        (r#"{"fleetlock-group": "a b"}"#, "`fleetlock-group`"),
        (r#"{"backoff-secs": 0}"#, "`backoff-secs` must be"),
        (
            r#"{"max-backoff-secs": 1.5}"#,
            "`max-backoff-secs`: invalid type: floating point",
        ),
        (
            r#"{"backoff-secs": 60, "max-backoff-secs": 30}"#,
            "`max-backoff-secs` (30) is less than `backoff-secs` (60)",
        ),
        (r#"{"strategy": "x"}"#, "unknown field `strategy`"),
        (r#"{"policy": null}"#, "`policy` is null"),
        ("[1]", "expected a JSON object"),
    ] {
        let msg = format!("{:#}", load(None, text).unwrap_err());
        assert!(msg.contains(want), "{text}: {msg}");
        assert!(msg.contains("etc/slipway/updates.json"), "{msg}");
    }
    let msg = format!("{:#}", load(Some("{"), "{}").unwrap_err());
    assert!(msg.contains("usr/lib/slipway/updates.json"), "{msg}");
}

/// A scripted host: each action answers the next scripted result (or a default), and
/// every call is recorded with the clock's time.
#[derive(Default)]
struct Fake {
    clock: u64,
    calls: Vec<(&'static str, u64)>,
    pending: Option<Update>,
    check: VecDeque<Result<Found>>,
    download: VecDeque<Result<Option<Update>>>,
    deploy: VecDeque<Result<Option<Update>>>,
    lock: VecDeque<Result<Answer>>,
    reboot: VecDeque<Result<()>>,
}

fn u(v: &str) -> Update {
    Update {
        commit: format!("c{v}"),
        version: Some(v.into()),
    }
}

fn next<T>(q: &mut VecDeque<Result<T>>, default: T) -> Result<T> {
    q.pop_front().unwrap_or(Ok(default))
}

impl Env for Fake {
    fn pending(&mut self) -> Result<Option<Update>> {
        self.calls.push(("pending", self.clock));
        Ok(self.pending.clone())
    }
    fn check(&mut self) -> Result<Found> {
        self.calls.push(("check", self.clock));
        next(&mut self.check, Found::Newer(u("2")))
    }
    fn download(&mut self) -> Result<Option<Update>> {
        self.calls.push(("download", self.clock));
        next(&mut self.download, Some(u("2")))
    }
    fn deploy(&mut self) -> Result<Option<Update>> {
        self.calls.push(("deploy", self.clock));
        next(&mut self.deploy, Some(u("2")))
    }
    fn pre_reboot(&mut self) -> Result<Answer> {
        self.calls.push(("pre-reboot", self.clock));
        next(&mut self.lock, Answer::Granted)
    }
    fn reboot(&mut self, _: &Update) -> Result<()> {
        self.calls.push(("reboot", self.clock));
        next(&mut self.reboot, ())
    }
    fn now(&self) -> u64 {
        self.clock
    }
}

/// Step until the pass ends, the clock following every wait; the waits and the end.
fn pass(m: &mut Machine, env: &mut Fake) -> (Vec<(u64, WaitFor)>, Outcome) {
    let mut waits = Vec::new();
    for _ in 0..100 {
        match m.step(env) {
            Next::Now => {}
            Next::Wait { secs, why } => {
                env.clock += secs;
                waits.push((secs, why));
            }
            Next::End(o) => {
                assert_eq!(m.state, State::Start);
                return (waits, o);
            }
        }
    }
    panic!("no end after 100 steps: {:?}", env.calls);
}

fn settings(policy: Policy) -> UpdateSettings {
    UpdateSettings {
        policy,
        backoff_secs: 1,
        max_backoff_secs: 60,
        ..Default::default()
    }
}

fn calls(env: &Fake) -> Vec<&'static str> {
    env.calls.iter().map(|(c, _)| *c).collect()
}

#[test]
fn policy_check_only_reports() {
    let mut env = Fake::default();
    let (waits, o) = pass(&mut Machine::new(&settings(Policy::Check)), &mut env);
    assert_eq!((waits, o), (vec![], Outcome::Available(u("2"))));
    assert_eq!(calls(&env), ["check"]);
}

#[test]
fn policy_stage_downloads_and_stops() {
    let mut env = Fake::default();
    let (waits, o) = pass(&mut Machine::new(&settings(Policy::Stage)), &mut env);
    assert_eq!((waits, o), (vec![], Outcome::Staged(u("2"))));
    assert_eq!(calls(&env), ["check", "download"]);
}

#[test]
fn policy_apply_deploys_and_reboots() {
    let mut env = Fake::default();
    let (waits, o) = pass(&mut Machine::new(&settings(Policy::Apply)), &mut env);
    assert_eq!((waits, o), (vec![], Outcome::Rebooted(u("2"))));
    assert_eq!(
        calls(&env),
        ["pending", "check", "download", "deploy", "reboot"]
    );
}

#[test]
fn nothing_to_do_ends_the_pass() {
    for policy in [Policy::Check, Policy::Stage, Policy::Apply] {
        let mut env = Fake::default();
        env.check.push_back(Ok(Found::UpToDate));
        env.check.push_back(Ok(Found::NotForUs {
            update: u("0"),
            why: "older".into(),
        }));
        let mut m = Machine::new(&settings(policy));
        assert_eq!(pass(&mut m, &mut env).1, Outcome::UpToDate);
        assert_eq!(
            pass(&mut m, &mut env).1,
            Outcome::NotApplied {
                update: u("0"),
                why: "older".into()
            }
        );
        assert!(
            !calls(&env).contains(&"download") && !calls(&env).contains(&"reboot"),
            "{policy:?}: {:?}",
            env.calls
        );
    }
}

#[test]
fn a_deployed_update_waits_for_its_reboot_window() {
    let mut s = settings(Policy::Apply);
    s.reboot_windows = vec![window(&[0], "02:00", 60)];
    let mut env = Fake {
        clock: at(6, 23, 0),
        ..Default::default()
    };
    let (waits, o) = pass(&mut Machine::new(&s), &mut env);
    assert_eq!(waits, [(3 * H, WaitFor::RebootWindow)]);
    assert_eq!(o, Outcome::Rebooted(u("2")));
    let reboot = env.calls.iter().find(|(c, _)| *c == "reboot").unwrap();
    assert_eq!(reboot.1, at(7, 2, 0));
    // Deployed before the wait, not after.
    let deploy = env.calls.iter().find(|(c, _)| *c == "deploy").unwrap();
    assert_eq!(deploy.1, at(6, 23, 0));
}

#[test]
fn an_update_deployed_earlier_is_picked_up() {
    let mut env = Fake {
        pending: Some(u("3")),
        ..Default::default()
    };
    let (_, o) = pass(&mut Machine::new(&settings(Policy::Apply)), &mut env);
    assert_eq!(o, Outcome::Rebooted(u("3")));
    assert_eq!(calls(&env), ["pending", "reboot"]);
    // Other policies never reboot into it.
    let mut env = Fake {
        pending: Some(u("3")),
        ..Default::default()
    };
    pass(&mut Machine::new(&settings(Policy::Stage)), &mut env);
    assert_eq!(calls(&env), ["check", "download"]);
}

#[test]
fn a_refused_reboot_slot_backs_off_until_granted() {
    let mut s = settings(Policy::Apply);
    s.fleetlock_url = Some("http://lock".into());
    let mut env = Fake::default();
    let full = Denial {
        status: 409,
        kind: Some("failed_lock_semaphore_full".into()),
        value: None,
        body: String::new(),
    };
    env.lock.push_back(Ok(Answer::Denied(full.clone())));
    env.lock
        .push_back(Err(anyhow!("POST http://lock/v1/pre-reboot: refused")));
    env.lock.push_back(Ok(Answer::Denied(full)));
    let mut m = Machine::new(&s);
    let (waits, o) = pass(&mut m, &mut env);
    assert_eq!(o, Outcome::Rebooted(u("2")));
    let secs: Vec<u64> = waits.iter().map(|w| w.0).collect();
    assert_eq!(secs, [1, 2, 4]);
    assert!(
        matches!(&waits[0].1, WaitFor::FleetLock(w) if w.contains("no reboot slot: HTTP 409")),
        "{waits:?}"
    );
    assert!(
        matches!(&waits[1].1, WaitFor::FleetLock(w) if w.contains("POST http://lock")),
        "{waits:?}"
    );
    // The reboot comes only after the grant: right after the fourth request.
    let c: Vec<_> = env.calls.iter().filter(|(c, _)| *c != "pending").collect();
    let names: Vec<_> = c.iter().map(|(c, _)| *c).collect();
    assert_eq!(
        names,
        [
            "check",
            "download",
            "deploy",
            "pre-reboot",
            "pre-reboot",
            "pre-reboot",
            "pre-reboot",
            "reboot"
        ]
    );
    assert_eq!(c[6].1, c[7].1);
    assert_eq!(c[7].1 - c[3].1, 7);
    // Granted resets the backoff: the next refusal waits the base again.
    env.lock.push_back(Ok(Answer::Denied(Denial {
        status: 500,
        kind: None,
        value: None,
        body: "x".into(),
    })));
    let (waits, _) = pass(&mut m, &mut env);
    assert_eq!(waits.len(), 1);
    assert_eq!(waits[0].0, 1);
}

#[test]
fn the_window_is_checked_again_after_a_refused_slot() {
    let mut s = settings(Policy::Apply);
    s.fleetlock_url = Some("http://lock".into());
    s.backoff_secs = 2 * H;
    s.max_backoff_secs = 2 * H;
    s.reboot_windows = vec![window(&[0], "02:00", 60)];
    let mut env = Fake {
        clock: at(0, 2, 30),
        ..Default::default()
    };
    env.lock
        .push_back(Ok(Answer::Denied(Denial::from_body(409, ""))));
    let (waits, o) = pass(&mut Machine::new(&s), &mut env);
    assert_eq!(o, Outcome::Rebooted(u("2")));
    // Refused at 02:30, asked again at 04:30: outside, so wait for next Monday 02:00.
    assert_eq!(waits[1], (7 * D - 2 * H - 30 * 60, WaitFor::RebootWindow));
    let reboot = env.calls.iter().find(|(c, _)| *c == "reboot").unwrap();
    assert_eq!(reboot.1, at(7, 2, 0));
}

#[test]
fn a_failed_download_is_retried_later() {
    let mut env = Fake::default();
    env.download
        .push_back(Err(anyhow!("pulling: connection refused")));
    env.download
        .push_back(Err(anyhow!("pulling: connection refused")));
    let mut m = Machine::new(&settings(Policy::Apply));
    let (waits, o) = pass(&mut m, &mut env);
    assert_eq!(o, Outcome::Rebooted(u("2")));
    assert_eq!(
        waits,
        [
            (1, WaitFor::Retry("pulling: connection refused".into())),
            (2, WaitFor::Retry("pulling: connection refused".into()))
        ]
    );
    // Each retry starts the pass again (the remote may have moved on).
    assert_eq!(
        calls(&env),
        [
            "pending", "check", "download", "pending", "check", "download", "pending", "check",
            "download", "deploy", "reboot"
        ]
    );
    // A pass that ends resets the backoff.
    env.check.push_back(Err(anyhow!("x")));
    let (waits, _) = pass(&mut m, &mut env);
    assert_eq!(waits[0].0, 1);
}

#[test]
fn a_failed_reboot_is_retried_without_deploying_again() {
    let mut env = Fake::default();
    env.reboot
        .push_back(Err(anyhow!("systemctl reboot failed")));
    let mut m = Machine::new(&settings(Policy::Apply));
    assert!(matches!(m.step(&mut env), Next::Now)); // Start
    for _ in 0..4 {
        m.step(&mut env);
    }
    assert_eq!(m.state, State::Rebooting(u("2")));
    assert!(matches!(
        m.step(&mut env),
        Next::Wait {
            why: WaitFor::Retry(_),
            ..
        }
    ));
    env.pending = Some(u("2"));
    assert_eq!(pass(&mut m, &mut env).1, Outcome::Rebooted(u("2")));
    assert_eq!(calls(&env).iter().filter(|c| **c == "deploy").count(), 1);
}

fn root_with(settings: Option<&str>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("etc/slipway")).unwrap();
    std::fs::write(
        d.path().join("etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    if let Some(s) = settings {
        std::fs::write(d.path().join("etc/slipway/updates.json"), s).unwrap();
    }
    d
}

#[test]
fn steady_state_is_reported_with_the_settings_and_retried() {
    // No URL: nothing to do.
    report_steady_state(root_with(None).path()).unwrap();

    let srv = crate::host::fleetlock::testserver::start(vec![(500, "down"), (200, "")]);
    let root = root_with(Some(&format!(
        r#"{{"fleetlock-url": "{}", "fleetlock-group": "edge", "backoff-secs": 1}}"#,
        srv.base
    )));
    report_steady_state(root.path()).unwrap();
    let reqs = srv.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].path, "/base/v1/steady-state");
    let body: serde_json::Value = serde_json::from_str(&reqs[1].body).unwrap();
    assert_eq!(body["client_params"]["group"], "edge");
    assert_eq!(
        body["client_params"]["id"],
        fleetlock::client_id("0123456789abcdef0123456789abcdef")
    );

    // Unreachable: gives up within the budget, the error names the URL.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = root_with(Some(&format!(
        r#"{{"fleetlock-url": "http://127.0.0.1:{port}", "backoff-secs": 1}}"#
    )));
    let err = report_steady_state_within(root.path(), Duration::from_secs(2)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("http://127.0.0.1:{port}/v1/steady-state")),
        "{msg}"
    );
    assert!(msg.contains("giving up"), "{msg}");
}
