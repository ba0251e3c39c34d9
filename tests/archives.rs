//! `keysentry scan` of archives and container images: zip/jar/war, tar,
//! tar.gz, gz, nested; `docker save` tarballs and OCI layouts. The archives
//! are built here with the same crates keysentry reads them with, and some
//! are made hostile by hand (bombs, traversal names, links, cuts, bad CRC).

use crate::scan_cli::{rules_dir, stderr, stdout, KEY, KEY2};
use crate::support::{keysentry, write};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Write};
use std::path::Path;
use std::process::Output;
use tempfile::TempDir;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

use crate::support::scan_json_in as scan_json;

/// (path, line, column) of every finding, sorted.
fn places(o: &Output) -> Vec<(String, u64, u64)> {
    let all: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)));
    let mut out: Vec<_> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64().unwrap_or(0),
                f["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    out.sort();
    out
}

fn paths(o: &Output) -> Vec<String> {
    places(o).into_iter().map(|p| p.0).collect()
}

fn zip_of(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        z.start_file(*name, opts).expect("zip entry");
        z.write_all(data).expect("zip data");
    }
    z.finish().expect("zip finish").into_inner()
}

/// A GNU tar; names are written into the header as given (no checks), so
/// that hostile names can be made.
fn tar_of(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, *data).expect("tar entry");
    }
    b.into_inner().expect("tar finish")
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip finish")
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

fn put(dir: &Path, rel: &str, data: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

fn props(key: &str) -> Vec<u8> {
    format!("# app\nserver.port=8080\n  api.key = {key}\n").into_bytes()
}

/// Asserts the run found something, and that no key reached stderr.
fn found(o: &Output) {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(o), stderr(o));
    let err = stderr(o);
    assert!(
        !err.contains(KEY) && !err.contains(KEY2),
        "a key on stderr: {err}"
    );
}

#[test]
fn a_key_in_a_jar_is_reported_at_its_inner_path_line_and_column() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let jar = zip_of(
        &[
            ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
            ("com/example/App.class", b"\xca\xfe\xba\xbe\0\0\0\x34"),
            (
                "BOOT-INF/classes/config/application.properties",
                &props(KEY),
            ),
        ],
        CompressionMethod::Deflated,
    );
    put(dir.path(), "target/app.jar", &jar);
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        places(&o),
        [(
            "target/app.jar!/BOOT-INF/classes/config/application.properties".to_string(),
            3,
            13
        )]
    );
    let err = stderr(&o);
    assert!(err.contains("expanded 1 archive"), "{err}");
    assert!(err.contains("skipped 1 binary"), "{err}");
    assert!(!err.contains("INCOMPLETE"), "{err}");
}

#[test]
fn text_and_sarif_reports_show_the_inner_path() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let war = zip_of(
        &[("WEB-INF/web.env", &props(KEY))],
        CompressionMethod::Deflated,
    );
    put(dir.path(), "shop.war", &war);
    let text = keysentry()
        .current_dir(dir.path())
        .args(["scan", ".", "--rules"])
        .arg(rules.path())
        .output()
        .unwrap();
    found(&text);
    assert!(
        stdout(&text).contains("shop.war!/WEB-INF/web.env:3:13"),
        "{}",
        stdout(&text)
    );
    let sarif = keysentry()
        .current_dir(dir.path())
        .args(["scan", ".", "--format", "sarif", "--rules"])
        .arg(rules.path())
        .output()
        .unwrap();
    found(&sarif);
    let report: Value = serde_json::from_slice(&sarif.stdout).expect("SARIF is JSON");
    let location = &report["runs"][0]["results"][0]["locations"][0]["physicalLocation"];
    assert_eq!(
        location["artifactLocation"]["uri"],
        "shop.war%21/WEB-INF/web.env",
        "{}",
        stdout(&sarif)
    );
    assert_eq!(location["region"]["startLine"], 3);
}

#[test]
fn tgz_a_lone_gz_and_a_zip_nested_in_a_tar_are_expanded() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let tgz = gz(&tar_of(&[(b"./config/x.yml", &props(KEY))]));
    put(dir.path(), "release.tgz", &tgz);
    put(dir.path(), "logs/app.log.gz", &gz(&props(KEY2)));
    let inner = zip_of(
        &[("secrets.env", &props(KEY2))],
        CompressionMethod::Deflated,
    );
    put(
        dir.path(),
        "bundle.tar",
        &tar_of(&[(b"README", b"hello\n"), (b"lib/inner.zip", &inner)]),
    );
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        paths(&o),
        [
            "bundle.tar!/lib/inner.zip!/secrets.env",
            "logs/app.log.gz!/app.log",
            "release.tgz!/config/x.yml",
        ]
    );
    assert!(stderr(&o).contains("scanned 4 files"), "{}", stderr(&o));
}

#[test]
fn nesting_stops_at_the_depth_limit_with_a_warning() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let mut archive = zip_of(&[("k.env", &props(KEY))], CompressionMethod::Deflated);
    for level in (2..=4).rev() {
        let name = format!("d{level}.zip");
        archive = zip_of(&[(&name, &archive)], CompressionMethod::Deflated);
    }
    put(dir.path(), "d1.zip", &archive);
    let o = scan_json(dir.path(), &rules, &["."]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("d1.zip!/d2.zip!/d3.zip!/d4.zip: not expanded")
            && err.contains("--max-archive-depth"),
        "{err}"
    );
    assert!(err.contains("INCOMPLETE"), "{err}");
    let deeper = scan_json(dir.path(), &rules, &[".", "--max-archive-depth", "4"]);
    found(&deeper);
    assert_eq!(paths(&deeper), ["d1.zip!/d2.zip!/d3.zip!/d4.zip!/k.env"]);
}

/// A layer: a tar of `files`.
fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<(&[u8], &[u8])> = files.iter().map(|(n, d)| (n.as_bytes(), *d)).collect();
    tar_of(&entries)
}

#[test]
fn docker_save_tarballs_scan_every_layer_and_the_config() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    // Docker 25+ writes an OCI layout: layer 1 adds the key, layer 2
    // deletes it (a whiteout); it is still in the image.
    let l1 = gz(&layer(&[("app/.env", &props(KEY))]));
    let l2 = layer(&[("app/.wh..env", b""), ("app/main.py", b"print(1)\n")]);
    let config = format!(r#"{{"config":{{"Env":["PATH=/usr/bin","KSQ_TOKEN={KEY2}"]}}}}"#);
    let (d1, d2, dc) = (sha(&l1), sha(&l2), sha(config.as_bytes()));
    let manifest = format!(
        r#"[{{"Config":"blobs/sha256/{dc}","RepoTags":["app:1"],"Layers":["blobs/sha256/{d1}","blobs/sha256/{d2}"]}}]"#
    );
    let (b1, b2, bc) = (
        format!("blobs/sha256/{d1}"),
        format!("blobs/sha256/{d2}"),
        format!("blobs/sha256/{dc}"),
    );
    let image = tar_of(&[
        (b1.as_bytes(), &l1),
        (b2.as_bytes(), &l2),
        (bc.as_bytes(), config.as_bytes()),
        (b"manifest.json", manifest.as_bytes()),
        (b"oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
    ]);
    put(dir.path(), "image.tar", &image);
    // The older format: <id>/layer.tar beside <id>/json.
    let id = sha(b"legacy layer");
    let legacy_layer = layer(&[("etc/app/creds", &props(KEY))]);
    let (lp, jp) = (format!("{id}/layer.tar"), format!("{id}/json"));
    let legacy = tar_of(&[
        (lp.as_bytes(), &legacy_layer),
        (jp.as_bytes(), b"{}"),
        (
            b"manifest.json",
            format!(r#"[{{"Layers":["{lp}"]}}]"#).as_bytes(),
        ),
    ]);
    put(dir.path(), "old.tar", &legacy);
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        places(&o),
        [
            (format!("image.tar!/blobs/sha256/{dc}"), 1, 46),
            (format!("image.tar!layer sha256:{d1}!/app/.env"), 3, 13),
            (format!("old.tar!layer {id}!/etc/app/creds"), 3, 13),
        ]
    );
}

#[test]
fn oci_layout_directories_name_layers_by_digest() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let l1 = gz(&layer(&[("srv/settings.yml", &props(KEY))]));
    let d1 = sha(&l1);
    put(
        dir.path(),
        "img/oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    put(
        dir.path(),
        "img/index.json",
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    put(dir.path(), &format!("img/blobs/sha256/{d1}"), &l1);
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        paths(&o),
        [format!("img!layer sha256:{d1}!/srv/settings.yml")]
    );
    // The layout itself as the root.
    let o = scan_json(&dir.path().join("img"), &rules, &["."]);
    found(&o);
    assert_eq!(paths(&o), [format!("layer sha256:{d1}!/srv/settings.yml")]);
}

#[test]
fn a_bomb_stops_at_the_size_cap_and_the_scan_goes_on() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    // 24 MiB of text in a few KiB, after an entry holding a key.
    let text_bomb = vec![b'a'; 24 << 20];
    let zip = zip_of(
        &[
            ("first.env", &props(KEY)),
            ("bomb.txt", &text_bomb),
            ("last.env", &props(KEY2)),
        ],
        CompressionMethod::Deflated,
    );
    assert!(zip.len() < 200 << 10, "the bomb is {} bytes", zip.len());
    put(dir.path(), "bomb.zip", &zip);
    // Zeros in a tgz: skipped as binary, still inflated to be passed over.
    let zeros = vec![0u8; 24 << 20];
    put(
        dir.path(),
        "zeros.tgz",
        &gz(&tar_of(&[
            (b"zero.bin", &zeros),
            (b"after.env", &props(KEY2)),
        ])),
    );
    put(dir.path(), "plain.env", &props(KEY2));
    let o = scan_json(dir.path(), &rules, &[".", "--max-archive-size", "8388608"]);
    found(&o);
    assert_eq!(paths(&o), ["bomb.zip!/first.env", "plain.env"]);
    let err = stderr(&o);
    for archive in ["bomb.zip", "zeros.tgz"] {
        assert!(
            err.contains(&format!(
                "could not read {archive}: stopped at the 8 MiB limit"
            )),
            "{err}"
        );
    }
    assert!(err.contains("INCOMPLETE: 2 files not scanned"), "{err}");
    // Within a bigger cap both archives are read to the end.
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        paths(&o),
        [
            "bomb.zip!/first.env",
            "bomb.zip!/last.env",
            "plain.env",
            "zeros.tgz!/after.env"
        ]
    );
}

#[test]
fn traversal_names_and_links_name_findings_and_touch_nothing() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let outside = TempDir::new().unwrap();
    write(outside.path(), "secret.env", &format!("K={KEY2}\n"));
    let mut b = tar::Builder::new(Vec::new());
    let escape = "../../../../../../../../tmp/keysentry-escaped.env";
    for name in [escape, "/etc/keysentry-abs.env", "a\x1b[2Jb.env"] {
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        let data = props(KEY);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    for (kind, name) in [
        (tar::EntryType::Symlink, "link.env"),
        (tar::EntryType::Link, "hard.env"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_link_name(outside.path().join("secret.env")).unwrap();
        h.set_size(0);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }
    put(dir.path(), "evil.tar", &b.into_inner().unwrap());
    let zip = zip_of(
        &[("../../zip-escaped.env", &props(KEY))],
        CompressionMethod::Stored,
    );
    put(dir.path(), "evil.zip", &zip);
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        paths(&o),
        [
            format!("evil.tar!/{escape}"),
            "evil.tar!/a\\u{1b}[2Jb.env".to_string(),
            "evil.tar!/etc/keysentry-abs.env".to_string(),
            "evil.zip!/../../zip-escaped.env".to_string(),
        ]
    );
    // Links are not followed: the key outside is not reported.
    assert!(!stdout(&o).contains("link.env") && !stdout(&o).contains("hard.env"));
    assert!(!stderr(&o).contains('\x1b'), "{}", stderr(&o));
    // Nothing was written anywhere.
    for gone in [
        Path::new("/tmp/keysentry-escaped.env"),
        Path::new("/etc/keysentry-abs.env"),
    ] {
        assert!(!gone.exists(), "{} was written", gone.display());
    }
    assert!(!dir
        .path()
        .parent()
        .unwrap()
        .join("zip-escaped.env")
        .exists());
}

#[test]
fn truncated_and_corrupt_archives_warn_and_keep_what_was_read() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    // A tgz cut in its second file: the first is still scanned.
    let noise: String = (0..40_000u32)
        .map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761)))
        .collect();
    let tgz = gz(&tar_of(&[
        (b"first.env", &props(KEY)),
        (b"noise.txt", noise.as_bytes()),
    ]));
    put(dir.path(), "cut.tgz", &tgz[..tgz.len() / 2]);
    // A stored zip entry with a byte changed: its CRC no longer matches.
    let mut body = props(KEY2);
    body.extend_from_slice(b"# CORRUPTME\n");
    let mut zip = zip_of(&[("bad.env", &body)], CompressionMethod::Stored);
    let at = zip
        .windows(9)
        .position(|w| w == b"CORRUPTME")
        .expect("marker");
    zip[at] = b'X';
    put(dir.path(), "badcrc.zip", &zip);
    // A zip whose central directory is cut off: its entries are still read.
    let whole = zip_of(&[("kept.env", &props(KEY))], CompressionMethod::Deflated);
    put(dir.path(), "nodir.jar", &whole[..whole.len() - 40]);
    put(dir.path(), "ok.env", &props(KEY2));
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(
        paths(&o),
        [
            "badcrc.zip!/bad.env",
            "cut.tgz!/first.env",
            "nodir.jar!/kept.env",
            "ok.env"
        ]
    );
    let err = stderr(&o);
    assert!(
        err.contains("could not read badcrc.zip!/bad.env: bad checksum"),
        "{err}"
    );
    assert!(err.contains("could not read cut.tgz"), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(
        err.contains("could not read nodir.jar: not a readable zip archive"),
        "{err}"
    );
    assert!(err.contains("INCOMPLETE"), "{err}");
}

#[test]
fn archives_are_found_by_magic_bytes_and_by_name_for_a_prefixed_jar() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let data = zip_of(&[("k.env", &props(KEY))], CompressionMethod::Deflated);
    put(dir.path(), "download.bin", &data);
    // A self-running jar: a launcher script, then the zip.
    let mut run = b"#!/bin/sh\nexec java -jar \"$0\" \"$@\"\n\0".to_vec();
    run.extend_from_slice(&data);
    put(dir.path(), "run.jar", &run);
    let o = scan_json(dir.path(), &rules, &["."]);
    found(&o);
    assert_eq!(paths(&o), ["download.bin!/k.env", "run.jar!/k.env"]);
}

#[test]
fn archives_can_be_turned_off_and_stdin_stays_text() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    // Long enough that deflate is used: the key is not in the raw bytes.
    let body = props(KEY).repeat(20);
    let jar = zip_of(&[("k.env", &body)], CompressionMethod::Deflated);
    assert!(!jar.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
    put(dir.path(), "app.jar", &jar);
    let off = scan_json(dir.path(), &rules, &[".", "--no-archives"]);
    assert_eq!(off.status.code(), Some(0), "{}", stderr(&off));
    assert!(
        stderr(&off).contains("skipped 1 binary"),
        "{}",
        stderr(&off)
    );
    write(
        dir.path(),
        "ks.yaml",
        "scan:\n  archives:\n    enabled: false\n",
    );
    let conf = scan_json(dir.path(), &rules, &["app.jar", "--config", "ks.yaml"]);
    assert_eq!(conf.status.code(), Some(0), "{}", stderr(&conf));
    write(
        dir.path(),
        "bad.yaml",
        "scan:\n  archives:\n    max_depth: 0\n",
    );
    let bad = scan_json(dir.path(), &rules, &["app.jar", "--config", "bad.yaml"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("scan.archives.max_depth"),
        "{}",
        stderr(&bad)
    );
    let piped = keysentry()
        .args(["scan", "-", "--format", "json", "--rules"])
        .arg(rules.path())
        .write_stdin(jar)
        .output()
        .unwrap();
    assert_eq!(piped.status.code(), Some(0), "{}", stderr(&piped));
    assert!(!stderr(&piped).contains("expanded"), "{}", stderr(&piped));
}

#[test]
fn a_named_archive_over_max_file_size_is_still_expanded() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let filler: String = (0..20_000u32)
        .map(|i| format!("{:08x}\n", i.wrapping_mul(2_654_435_761)))
        .collect();
    let jar = zip_of(
        &[("k.env", &props(KEY)), ("filler.txt", filler.as_bytes())],
        CompressionMethod::Stored,
    );
    assert!(jar.len() > 100_000);
    put(dir.path(), "big.jar", &jar);
    for target in ["big.jar", "."] {
        let o = scan_json(dir.path(), &rules, &[target, "--max-file-size", "100000"]);
        found(&o);
        assert_eq!(paths(&o), ["big.jar!/k.env"], "{target}");
        // The filler inside is over the limit too: named, with advice that fits.
        let err = stderr(&o);
        assert!(err.contains("big.jar!/filler.txt not scanned"), "{err}");
        assert!(!err.contains("name the file on the command line"), "{err}");
    }
}

#[test]
fn the_entry_cap_from_the_config_stops_a_huge_archive() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let names: Vec<String> = (0..50).map(|i| format!("f{i:02}.txt")).collect();
    let mut entries: Vec<(&[u8], &[u8])> = vec![(b"first.env", &[])];
    let key = props(KEY);
    entries[0].1 = &key;
    for n in &names {
        entries.push((n.as_bytes(), b"x\n"));
    }
    let late = props(KEY2);
    entries.push((b"late.env", &late));
    put(dir.path(), "many.tar", &tar_of(&entries));
    write(
        dir.path(),
        "ks.yaml",
        "scan:\n  archives:\n    max_entries: 10\n",
    );
    let o = scan_json(dir.path(), &rules, &["many.tar", "--config", "ks.yaml"]);
    found(&o);
    assert_eq!(paths(&o), ["many.tar!/first.env"]);
    let err = stderr(&o);
    assert!(
        err.contains("could not read many.tar: stopped at the limit of 10 entries"),
        "{err}"
    );
    assert!(err.contains("scanned 10 files"), "{err}");
    // Without the config every entry is read.
    let o = scan_json(dir.path(), &rules, &["many.tar"]);
    assert_eq!(paths(&o), ["many.tar!/first.env", "many.tar!/late.env"]);
}
