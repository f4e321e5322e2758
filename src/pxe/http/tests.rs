use super::*;

#[test]
fn ranges() {
    use RangeAnswer::*;
    let p = |s: &str, len| parse_range(s.as_bytes(), len);
    assert_eq!(p("bytes=0-9", 100), Partial { start: 0, end: 9 });
    assert_eq!(p("bytes=90-", 100), Partial { start: 90, end: 99 });
    assert_eq!(p("bytes=90-1000", 100), Partial { start: 90, end: 99 });
    assert_eq!(p("bytes=-10", 100), Partial { start: 90, end: 99 });
    assert_eq!(p("bytes=-1000", 100), Partial { start: 0, end: 99 });
    assert_eq!(p("Bytes=5-5", 100), Partial { start: 5, end: 5 });
    assert_eq!(p("bytes= 1-2 ,", 100), Partial { start: 1, end: 2 });
    assert_eq!(p("bytes=99-99", 100), Partial { start: 99, end: 99 });
    // Unsatisfiable.
    assert_eq!(p("bytes=100-", 100), Unsatisfiable);
    assert_eq!(p("bytes=100-200", 100), Unsatisfiable);
    assert_eq!(p("bytes=-0", 100), Unsatisfiable);
    assert_eq!(p("bytes=0-", 0), Unsatisfiable);
    assert_eq!(p("bytes=-5", 0), Unsatisfiable);
    // Ignored: malformed, other units, several ranges.
    for s in [
        "bytes=9-0",
        "bytes=a-b",
        "bytes=-",
        "bytes=1",
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=",
        "items=0-1",
        "0-1",
        "bytes=0-1,5-6",
        "bytes=99999999999999999999999-",
    ] {
        assert_eq!(p(s, 100), Full, "{s}");
    }
    assert_eq!(parse_range(b"bytes=\xff-1", 100), Full);
}

#[test]
fn paths() {
    let ok = |s: &str| {
        decode_path(s)
            .unwrap()
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    assert_eq!(ok("/"), "");
    assert_eq!(ok("/a//b/./c"), "a/b/c");
    assert_eq!(ok("/repo/objects/ab/cd.filez"), "repo/objects/ab/cd.filez");
    assert_eq!(ok("/with%20space"), "with space");
    assert_eq!(ok("/.hidden/..x"), ".hidden/..x");
    for bad in [
        "/../etc/passwd",
        "/a/../../b",
        "/%2e%2e/etc",
        "/.%2E/etc",
        "/repo/%2e%2e/%2e%2e/etc/passwd",
        "/..%2fetc%2fpasswd",
        "/a%2Fb",
        "/a\\b",
        "/a%5cb",
        "/a%00b",
        "relative",
        "*",
    ] {
        assert!(decode_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn routes() {
    let c = |s: &str| {
        let (r, rel) = classify(&decode_path(s).unwrap());
        (r, String::from_utf8(rel).unwrap())
    };
    assert_eq!(c("/boot.ipxe"), (Route::BootScript, "".into()));
    assert_eq!(c("//boot%2eipxe"), (Route::BootScript, "".into()));
    assert_eq!(c("/kickstart"), (Route::Kickstart, "".into()));
    assert_eq!(c("/report"), (Route::Report, "".into()));
    assert_eq!(c("/status"), (Route::Status, "".into()));
    assert_eq!(c("/repo/config"), (Route::RepoFile, "config".into()));
    assert_eq!(c("/repo"), (Route::RepoFile, "".into()));
    assert_eq!(c("/repository"), (Route::BootFile, "repository".into()));
    assert_eq!(c("/x/boot.ipxe"), (Route::BootFile, "x/boot.ipxe".into()));
    assert_eq!(c("/vmlinuz"), (Route::BootFile, "vmlinuz".into()));
}

#[test]
fn macs_and_uuids() {
    let m = "52:54:00:ab:cd:ef";
    for s in [
        m,
        "52-54-00-AB-CD-EF",
        "525400abcdef",
        " 52:54:00:Ab:cD:eF ",
    ] {
        assert_eq!(normalize_mac(s).as_deref(), Some(m), "{s}");
    }
    for s in [
        "",
        "52:54:00:ab:cd",
        "52:54:00:ab:cd:eg",
        "5:54:00:ab:cd:ef",
        "52:54-00:ab:cd:ef",
        "é5",
    ] {
        assert_eq!(normalize_mac(s), None, "{s}");
    }
    let u = "12345678-1234-5678-9abc-def012345678";
    assert_eq!(normalize_uuid(u).unwrap(), Some(u.into()));
    assert_eq!(
        normalize_uuid("12345678123456789ABCDEF012345678").unwrap(),
        Some(u.into())
    );
    assert_eq!(normalize_uuid("").unwrap(), None);
    assert_eq!(
        normalize_uuid("00000000-0000-0000-0000-000000000000").unwrap(),
        None
    );
    assert_eq!(
        normalize_uuid("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF").unwrap(),
        None
    );
    assert!(normalize_uuid("12345678-1234-5678-9abc-def01234567").is_err());
    assert!(normalize_uuid("123456781-234-5678-9abc-def012345678").is_err());
    assert!(normalize_uuid("g2345678-1234-5678-9abc-def012345678").is_err());
}

#[test]
fn facts_from_query() {
    let peer: SocketAddr = "192.0.2.9:1234".parse().unwrap();
    let (f, problems) = RequestFacts::from_query(
        peer,
        "mac=52%3A54%3A00%3Aab%3Acd%3Aef&uuid=&hostname=node-1&platform=efi&x=a+b&x=second",
    );
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(f.mac.as_deref(), Some("52:54:00:ab:cd:ef"));
    assert_eq!(f.uuid, None);
    assert_eq!(f.hostname.as_deref(), Some("node-1"));
    assert_eq!(f.query["platform"], "efi");
    assert_eq!(f.query["x"], "a b", "first of repeated names");
    let (f, problems) = RequestFacts::from_query(peer, "mac=nope&uuid=1&hostname=a%0Ab");
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!((f.mac, f.uuid, f.hostname), (None, None, None));
}

#[test]
fn content_types() {
    assert_eq!(content_type(b"ipxe.efi"), "application/efi");
    assert_eq!(content_type(b"EFI/BOOT/BOOTX64.EFI"), "application/efi");
    assert_eq!(content_type(b"boot.ipxe"), "text/plain; charset=utf-8");
    assert_eq!(content_type(b"vmlinuz"), "application/octet-stream");
    assert_eq!(content_type(b"initramfs.img"), "application/octet-stream");
    assert_eq!(content_type(b"undionly.kpxe"), "application/octet-stream");
    assert_eq!(
        content_type(b"objects/ab/cd.filez"),
        "application/octet-stream"
    );
    assert_eq!(content_type(b"status.json"), "application/json");
}

#[test]
fn conditionals() {
    let etag = "\"1-2-3.4\"";
    let mtime = UNIX_EPOCH + Duration::new(1_700_000_000, 500);
    let h = |pairs: &[(header::HeaderName, &str)]| {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        m
    };
    let date = httpdate::fmt_http_date(mtime);
    let earlier = httpdate::fmt_http_date(mtime - Duration::from_secs(10));
    assert!(!not_modified(&h(&[]), etag, Some(mtime)));
    assert!(not_modified(
        &h(&[(header::IF_NONE_MATCH, etag)]),
        etag,
        Some(mtime)
    ));
    assert!(not_modified(
        &h(&[(header::IF_NONE_MATCH, "\"x\", W/\"1-2-3.4\"")]),
        etag,
        Some(mtime)
    ));
    assert!(not_modified(
        &h(&[(header::IF_NONE_MATCH, "*")]),
        etag,
        None
    ));
    // If-None-Match wins over If-Modified-Since.
    assert!(!not_modified(
        &h(&[
            (header::IF_NONE_MATCH, "\"x\""),
            (header::IF_MODIFIED_SINCE, &date)
        ]),
        etag,
        Some(mtime)
    ));
    assert!(not_modified(
        &h(&[(header::IF_MODIFIED_SINCE, &date)]),
        etag,
        Some(mtime)
    ));
    assert!(!not_modified(
        &h(&[(header::IF_MODIFIED_SINCE, &earlier)]),
        etag,
        Some(mtime)
    ));
    assert!(!not_modified(
        &h(&[(header::IF_MODIFIED_SINCE, "yesterday")]),
        etag,
        Some(mtime)
    ));

    assert!(if_range_holds(&h(&[]), etag, Some(mtime)));
    assert!(if_range_holds(
        &h(&[(header::IF_RANGE, etag)]),
        etag,
        Some(mtime)
    ));
    assert!(!if_range_holds(
        &h(&[(header::IF_RANGE, "\"other\"")]),
        etag,
        Some(mtime)
    ));
    assert!(!if_range_holds(
        &h(&[(header::IF_RANGE, "W/\"1-2-3.4\"")]),
        etag,
        Some(mtime)
    ));
    assert!(if_range_holds(
        &h(&[(header::IF_RANGE, &date)]),
        etag,
        Some(mtime)
    ));
    assert!(!if_range_holds(
        &h(&[(header::IF_RANGE, &earlier)]),
        etag,
        Some(mtime)
    ));
}

#[test]
fn event_line() {
    let peer: SocketAddr = "192.0.2.9:1234".parse().unwrap();
    let (facts, _) = RequestFacts::from_query(peer, "");
    let mut e = HttpEvent {
        facts,
        method: "GET".into(),
        target: "/vmlinuz".into(),
        route: Some(Route::BootFile),
        file: Some("vmlinuz".into()),
        status: 200,
        bytes: 10,
        length: 10,
        complete: true,
    };
    assert_eq!(e.to_string(), "192.0.2.9:1234 GET /vmlinuz 200 10 bytes");
    assert_eq!(e.delivered_file(), Some("vmlinuz"));
    e.complete = false;
    e.bytes = 4;
    assert_eq!(
        e.to_string(),
        "192.0.2.9:1234 GET /vmlinuz 200 4 bytes (cut short: 10 announced)"
    );
    assert_eq!(e.delivered_file(), None);
    assert_eq!(printable("/a\u{1b}[2Jb"), "/a\\u{1b}[2Jb");
}
