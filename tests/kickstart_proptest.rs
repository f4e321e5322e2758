//! Property tests of the kickstart language: the parser, the installer's and the image
//! builder's validation, and `pxe serve`'s template rendering never panic and never hang on
//! any input; what they refuse is an error that names the source. Fast: proptest's default
//! case count, or `PROPTEST_CASES` (`bench/run.sh pxe` runs many more).

use std::collections::BTreeMap;

use proptest::prelude::*;
use slipway::kickstart::{parse_str_with_base, template};

const SOURCE: &str = "fuzz.ks";

/// Words kickstart lines are made of: real commands and options, quoting, sections and
/// template placeholders, mixed with arbitrary text.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "ostreesetup",
            "--osname=debian",
            "--url=http://h/repo",
            "--ref=r",
            "--remote=x",
            "--nogpg",
            "zerombr",
            "clearpart",
            "--all",
            "--initlabel",
            "--drives=vda",
            "autopart",
            "--type=plain",
            "part",
            "/",
            "/boot",
            "/boot/efi",
            "biosboot",
            "--size=1",
            "--grow",
            "--fstype=ext4",
            "--fstype=efi",
            "--ondisk=vda",
            "bootloader",
            "--append=\"a b\"",
            "--timeout=1",
            "network",
            "--bootproto=dhcp",
            "--hostname=h",
            "rootpw",
            "--lock",
            "--plaintext",
            "--iscrypted",
            "user",
            "--name=core",
            "--groups=sudo,docker",
            "sshkey",
            "--username=core",
            "\"ssh-ed25519 AAAA k\"",
            "services",
            "--enabled=docker",
            "--disabled=x",
            "timezone",
            "--utc",
            "Etc/UTC",
            "lang",
            "en_US.UTF-8",
            "keyboard",
            "us",
            "reboot",
            "poweroff",
            "halt",
            "text",
            "ignoredisk",
            "--only-use=vda",
            "%pre",
            "%post",
            "--erroronfail",
            "--nochroot",
            "--interpreter=/bin/sh",
            "--log=/tmp/x",
            "%end",
            "%packages",
            "%include",
            "#",
            "'",
            "\"",
            "\\",
            "=",
            "--",
            "{{server}}",
            "{{hostname}}",
            "{{mac}}",
            "{{ref}}",
            "{{nope}}",
            "{{",
            "}}",
            "\t",
            "",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 0..7).prop_map(|w| w.join(" "))
}

fn kickstart() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..25).prop_map(|l| l.join("\n"))
}

fn parse_and_validate(text: &str) {
    // `%include` of a missing file is an error; a temporary base keeps it inside.
    let base = std::env::temp_dir();
    match parse_str_with_base(text, SOURCE, &base) {
        Ok(ks) => {
            let _ = ks.validate_for_install();
        }
        Err(e) => {
            let msg = format!("{e:#}");
            assert!(
                msg.contains(SOURCE),
                "the error does not name the file: {msg}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn any_text_never_panics(text in any::<String>()) {
        parse_and_validate(&text);
    }

    #[test]
    fn kickstart_like_text_never_panics(text in kickstart()) {
        parse_and_validate(&text);
    }

    #[test]
    fn templates_never_panic(text in kickstart()) {
        let mut values = BTreeMap::new();
        values.insert("server", "http://10.0.0.1:8080".to_string());
        values.insert("hostname", "node1".to_string());
        values.insert("mac", "52:54:00:00:00:01".to_string());
        values.insert("uuid", "00000000-0000-0000-0000-000000000000".to_string());
        values.insert("ip", "10.0.0.2".to_string());
        values.insert("ref", "r".to_string());
        if let Ok(rendered) = template::render(&text, SOURCE, &values) {
            prop_assert!(!rendered.contains("{{server}}"), "{rendered}");
            parse_and_validate(&rendered);
        }
        let _ = template::check(&text, SOURCE, "r", false);
    }
}
