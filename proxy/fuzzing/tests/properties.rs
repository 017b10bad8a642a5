//! The fuzz targets on stable Rust: every regression file replayed, then a fixed number of
//! seeded cases, half generated (structured, mostly valid) and half mutations of earlier ones.
//! The seed is fixed so a failure reproduces; a failing input is printed and written to
//! `$CARGO_TARGET_TMPDIR/fuzz-failures/` to become a regression file.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;
use sluice_fuzzing as fz;

const SEED: u64 = 0x5105_CE00_F022;

/// Runs `target` on `input`; on a panic, saves the input and says where before re-panicking.
fn check(name: &str, target: fn(&[u8]), input: &[u8], origin: &str) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| target(input))) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let file = dir.join(format!("{name}-{}", origin.replace(['/', ' '], "_")));
        let _ = std::fs::write(&file, input);
        eprintln!(
            "{name}: {origin} failed; input saved to {}:\n{}",
            file.display(),
            fz::show(input)
        );
        resume_unwind(panic);
    }
}

/// Every file in `regressions/<name>/`; there is always at least one.
fn replay(name: &str, target: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} has no regression file",
        dir.display()
    );
    for file in files {
        let input = std::fs::read(&file).expect("readable regression file");
        check(
            name,
            target,
            &input,
            &format!("regression {}", file.display()),
        );
    }
}

/// Regressions, then `cases` seeded inputs: even cases generated, odd ones a mutation of the
/// previous input (spliced with a fresh generated one).
fn run(name: &str, target: fn(&[u8]), generate: fn(&mut StdRng) -> Vec<u8>, cases: usize) {
    replay(name, target);
    let mut rng = StdRng::seed_from_u64(SEED ^ name.len() as u64);
    let mut previous = generate(&mut rng);
    for case in 0..cases {
        let input = if case % 2 == 0 {
            generate(&mut rng)
        } else {
            let donor = generate(&mut rng);
            fz::mutate(&mut rng, &previous, &donor)
        };
        check(name, target, &input, &format!("case {case}"));
        previous = input;
    }
}

#[test]
fn sigv4_authorization_header() {
    run(
        "sigv4_authorization_header",
        fz::sigv4_authorization_header,
        fz::gen_authorization_header,
        6000,
    );
}

#[test]
fn sigv4_presigned_query() {
    run(
        "sigv4_presigned_query",
        fz::sigv4_presigned_query,
        fz::gen_presigned_query,
        6000,
    );
}

#[test]
fn sigv4_canonical() {
    run(
        "sigv4_canonical",
        fz::sigv4_canonical,
        fz::gen_canonical,
        6000,
    );
}

#[test]
fn aws_chunked() {
    run("aws_chunked", fz::aws_chunked, fz::gen_aws_chunked, 3000);
}

#[test]
fn xml_documents() {
    run(
        "xml_documents",
        fz::xml_documents,
        fz::gen_xml_document,
        6000,
    );
}

#[test]
fn range_header() {
    run("range_header", fz::range_header, fz::gen_range_header, 3000);
}

#[test]
fn conditional_headers() {
    run(
        "conditional_headers",
        fz::conditional_headers,
        fz::gen_conditional_headers,
        6000,
    );
}

#[test]
fn config_loader() {
    run(
        "config_loader",
        fz::config_loader,
        |rng| fz::gen_config(rng).text.into_bytes(),
        1200,
    );
}

/// Generated configs with one known defect are refused, and without one accepted.
#[test]
fn config_verdicts_are_known_in_advance() {
    let mut rng = StdRng::seed_from_u64(SEED);
    for case in 0..300 {
        let generated = fz::gen_config(&mut rng);
        let result = sluice::config::parse(
            &generated.text,
            Path::new("f.yaml"),
            Path::new("/nonexistent-base"),
        );
        match (generated.defect, result) {
            (None, Err(e)) => panic!("case {case}: valid config refused: {e}\n{}", generated.text),
            (Some(defect), Ok(_)) => {
                panic!("case {case}: {defect} accepted:\n{}", generated.text)
            }
            _ => {}
        }
    }
}

#[test]
fn key_store_loader() {
    run(
        "key_store_loader",
        fz::key_store_loader,
        |rng| fz::gen_key_store(rng).text.into_bytes(),
        3000,
    );
}

/// Generated stores are accepted exactly when they were generated valid.
#[test]
fn key_store_verdicts_are_known_in_advance() {
    let mut rng = StdRng::seed_from_u64(SEED);
    for case in 0..500 {
        let generated = fz::gen_key_store(&mut rng);
        let accepted = sluice::keys::store::parse_records(&generated.text).is_ok();
        assert_eq!(
            accepted, generated.valid,
            "case {case}:\n{}",
            generated.text
        );
    }
}

#[test]
fn request_target() {
    run(
        "request_target",
        fz::request_target,
        fz::gen_request_target,
        6000,
    );
}

/// Every target has a regression directory and a fuzz target file, and nothing else is there.
#[test]
fn every_target_is_wired() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<&str> = fz::TARGETS.iter().map(|(n, _)| *n).collect();
    names.sort();
    for dir in ["regressions", "fuzz/fuzz_targets"] {
        let mut found: Vec<String> = std::fs::read_dir(root.join(dir))
            .expect("directory exists")
            .map(|e| {
                let name = e.expect("entry").file_name().into_string().expect("UTF-8");
                name.trim_end_matches(".rs").to_owned()
            })
            .collect();
        found.sort();
        assert_eq!(found, names, "{dir}");
    }
}
