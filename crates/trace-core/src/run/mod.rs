//! Reading a trace directory back, in capture order.
//!
//! A [`Run`] is every readable record of one trace directory, in execution order, plus the
//! problems met while reading it. Records are small (no values: the `.npy` files they name are
//! read by whoever needs them, one at a time), so a run holds all of them; its memory grows with
//! the number of records, never with the number of elements.
//!
//! # Order
//!
//! - **Manifest** (`manifest.jsonl` present): the manifest is streamed line by line and its
//!   entries sorted by `index` (threads may append lines slightly out of order). A last line cut
//!   short by a crash is reported and skipped. `.trace` files the manifest does not list (a
//!   record written just before a crash, before its manifest line) are reported and placed by
//!   their own `index` when they have one, else after every listed record.
//! - **Packed** (`records.jsonl` present, see [`crate::config::Layout::Packed`]): the log is
//!   read in chunks of lines parsed in parallel; records are sorted by `index` (a writer appends
//!   in index order, so this is the line order). A last line cut short by a crash (no newline,
//!   not valid JSON) is reported and skipped; any other line that is not a valid record is
//!   reported (naming the line) and skipped. A record's `file` is `records.jsonl:LINE`.
//! - **Index** (no manifest, every record has an `index`): sorted by `index`. Execution order is
//!   known.
//! - **Guessed** (seed-format directory): sorted by `seq` (absent = 0), then `index` (absent =
//!   last), then file name in natural order (digit runs compare as numbers, so `blk2` comes
//!   before `blk10`). Execution order is *unknown*: within one step the file name decides.
//!
//! # Occurrence
//!
//! Records are matched across runs by `(name, occurrence)`. Our records carry `occurrence`; for
//! records without it the k-th record of a name in the order above gets occurrence k, so decode
//! steps of seed-format runs still line up when `seq` is present. Two records of one name with
//! the same `seq` and no `occurrence` are reported as a duplicate seq.
//!
//! # Problems
//!
//! Anything wrong that still leaves an honest partial answer (a malformed record, a truncated
//! manifest line, a duplicate index, a file the manifest does not list) is collected as a
//! [`RecordError`] in [`Run::problems`] and the record concerned is skipped or kept as
//! documented on each case. With [`RunOptions::strict`] the first such problem is returned as
//! the error instead. A directory that cannot be listed, or holds neither a manifest nor any
//! `.trace` file, is always an error.
//!
//! [`RecordError`]: crate::record::RecordError

mod files;
mod loaded;
mod natural;
mod packed;
mod reader;
mod record;
mod stream;

pub use loaded::Run;
pub use natural::natural_cmp;
pub use packed::{PackedLine, PackedLines, PACKED_CHUNK};
pub use record::{RunOptions, RunOrder, RunRecord};
pub use stream::RunStream;

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;
    use std::fs;
    use std::path::Path;

    use super::stream::StreamSource;
    use super::*;
    use crate::record::{MANIFEST_FILE, PACKED_LOG};

    const HASH: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";

    fn seed(name: &str, extra: &str) -> String {
        format!(
            r#"{{"name":"{name}","shape":[1],"dtype":"F32","blake3":"{HASH}","rms":1.0,"num_elements":1{extra}}}"#
        )
    }

    fn write(dir: &Path, file: &str, text: &str) {
        fs::write(dir.join(file), text).unwrap();
    }

    fn names(run: &Run) -> Vec<(String, u64)> {
        run.records()
            .iter()
            .map(|r| (r.record.name.clone(), r.occurrence))
            .collect()
    }

    fn entry(index: u64, name: &str, occurrence: u64, file: &str) -> String {
        format!(r#"{{"index":{index},"name":"{name}","occurrence":{occurrence},"file":"{file}"}}"#)
    }

    fn ours(name: &str, index: u64, occurrence: u64) -> String {
        seed(
            name,
            &format!(r#","format_version":1,"index":{index},"occurrence":{occurrence}"#),
        )
    }

    #[test]
    fn natural_order() {
        let check = |a: &str, b: &str, expected: Ordering| {
            assert_eq!(natural_cmp(a, b), expected, "{a} vs {b}");
        };
        check("blk2.trace", "blk10.trace", Ordering::Less);
        check("blk10", "blk10", Ordering::Equal);
        check("a", "b", Ordering::Less);
        check("blk02", "blk2", Ordering::Greater);
        check("x", "x1", Ordering::Less);
        check(
            "99999999999999999999999",
            "100000000000000000000000",
            Ordering::Less,
        );
    }

    #[test]
    fn manifest_order_sorted_by_index_with_truncated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &ours("a", 0, 0));
        write(d, "b.trace", &ours("b", 1, 0));
        write(d, "a.1.trace", &ours("a", 2, 1));
        let manifest = [
            entry(1, "b", 0, "b.trace"),
            entry(0, "a", 0, "a.trace"),
            entry(2, "a", 1, "a.1.trace"),
        ]
        .join("\n")
            + "\n{\"index\":3,\"na";
        write(d, MANIFEST_FILE, &manifest);
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Manifest);
        assert_eq!(
            names(&run),
            [("a".into(), 0), ("b".into(), 0), ("a".into(), 1)]
        );
        assert_eq!(run.problems().len(), 1);
        let msg = run.problems()[0].to_string();
        assert!(
            msg.contains("manifest.jsonl") && msg.contains("line 4") && msg.contains("cut short"),
            "{msg}"
        );
        let strict = Run::open_with(d, &RunOptions { strict: true }).unwrap_err();
        assert!(strict.to_string().contains("cut short"), "{strict}");
    }

    #[test]
    fn manifest_problems_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &ours("a", 0, 0));
        write(d, "b.trace", &ours("b", 1, 0));
        write(d, "late.trace", &ours("late", 5, 0));
        write(d, "bad.trace", "{\"name\": 3}");
        let manifest = [
            entry(0, "a", 0, "a.trace"),
            entry(0, "b", 0, "b.trace"),
            entry(2, "x", 0, "../x.trace"),
            entry(3, "bad", 0, "bad.trace"),
            entry(4, "gone", 0, "gone.trace"),
            "{not json".to_owned(),
        ]
        .join("\n")
            + "\n";
        write(d, MANIFEST_FILE, &manifest);
        let run = Run::open(d).unwrap();
        // `b.trace` lost its manifest entry to the duplicate index, but the file itself carries
        // a free index, so it comes back as an unlisted record.
        assert_eq!(
            names(&run),
            [("a".into(), 0), ("b".into(), 0), ("late".into(), 0)]
        );
        let all: Vec<String> = run.problems().iter().map(|p| p.to_string()).collect();
        let all = all.join("\n");
        for needle in [
            "line 6",
            "duplicate index 0",
            "../x.trace",
            "bad.trace",
            "gone.trace",
            "late.trace: field `index`: record not listed",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
    }

    #[test]
    fn seed_directory_guessed_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "blk10_out.trace", &seed("blk10/out", ""));
        write(d, "blk2_out.trace", &seed("blk2/out", ""));
        write(d, "logits.trace", &seed("logits", r#","seq":1,"layer":-1"#));
        write(
            d,
            "logits_s0.trace",
            &seed("logits", r#","seq":0,"layer":-1"#),
        );
        write(d, "notes.txt", "not a record");
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Guessed);
        assert!(!run.order().is_execution_order());
        assert_eq!(
            names(&run),
            [
                ("blk2/out".into(), 0),
                ("blk10/out".into(), 0),
                ("logits".into(), 0),
                ("logits".into(), 1)
            ]
        );
        assert_eq!(run.records()[2].file, "logits_s0.trace");
        assert!(run.problems().is_empty());
    }

    #[test]
    fn duplicate_seq_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &seed("a", r#","seq":0"#));
        write(d, "a_copy.trace", &seed("a", r#","seq":0"#));
        let run = Run::open(d).unwrap();
        assert_eq!(names(&run), [("a".into(), 0), ("a".into(), 1)]);
        let msg = run.problems()[0].to_string();
        assert!(
            msg.contains("a_copy.trace: field `seq`: duplicate seq 0"),
            "{msg}"
        );
        assert!(Run::open_with(d, &RunOptions { strict: true }).is_err());
    }

    #[test]
    fn indexed_records_without_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "z.trace", &ours("z", 0, 0));
        write(d, "a.trace", &ours("a", 1, 0));
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Index);
        assert_eq!(names(&run), [("z".into(), 0), ("a".into(), 0)]);
    }

    fn packed(name: &str, index: u64, occurrence: u64) -> String {
        ours(name, index, occurrence)
    }

    #[test]
    fn packed_log_torn_last_line_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = [packed("b", 1, 0), packed("a", 0, 0), packed("a", 2, 1)].join("\n")
            + "\n"
            + &packed("c", 3, 0)[..40];
        write(d, PACKED_LOG, &log);
        let run = Run::open(d).unwrap();
        assert_eq!(run.order(), RunOrder::Packed);
        assert!(run.order().is_execution_order());
        assert_eq!(
            names(&run),
            [("a".into(), 0), ("b".into(), 0), ("a".into(), 1)]
        );
        assert_eq!(run.records()[0].file, "records.jsonl:2");
        assert_eq!(run.problems().len(), 1);
        let msg = run.problems()[0].to_string();
        assert!(
            msg.contains("records.jsonl") && msg.contains("line 4") && msg.contains("cut short"),
            "{msg}"
        );
        let strict = Run::open_with(d, &RunOptions { strict: true }).unwrap_err();
        assert!(strict.to_string().contains("cut short"), "{strict}");
    }

    #[test]
    fn packed_log_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = [
            packed("a", 0, 0),
            "{not json".to_owned(),
            "".to_owned(),
            packed("a", 0, 1),
            packed("a", 1, 0),
            seed("noindex", ""),
            packed("b", 2, 0).replace(HASH, "xyz"),
            packed("c", 3, 0),
        ]
        .join("\n")
            + "\n";
        write(d, PACKED_LOG, &log);
        write(d, MANIFEST_FILE, "");
        let run = Run::open(d).unwrap();
        assert_eq!(names(&run), [("a".into(), 0), ("c".into(), 0)]);
        assert_eq!(run.records()[1].file, "records.jsonl:8");
        let all: Vec<String> = run.problems().iter().map(|p| p.to_string()).collect();
        let all = all.join("\n");
        for needle in [
            "two layouts",
            "line 2",
            "records.jsonl:4: field `index`: duplicate index 0",
            "records.jsonl:5: field `occurrence`: duplicate occurrence 0",
            "records.jsonl:6: field `index`: missing",
            "line 7",
            "blake3",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert_eq!(run.problems().len(), 6, "{all}");
    }

    #[test]
    fn packed_lines_come_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACKED_LOG);
        let n = PACKED_CHUNK + 10;
        let log: String = (0..n)
            .map(|i| packed("x", i as u64, i as u64) + "\n")
            .collect();
        fs::write(&path, log).unwrap();
        let mut lines = PackedLines::open(&path).unwrap();
        let first = lines.next_chunk().unwrap().unwrap();
        assert_eq!(first.len(), PACKED_CHUNK);
        assert_eq!(first[5].number, 6);
        let second = lines.next_chunk().unwrap().unwrap();
        assert_eq!(second.len(), 10);
        assert_eq!(second[9].record.as_ref().unwrap().index, Some(n as u64 - 1));
        assert!(lines.next_chunk().unwrap().is_none());
    }

    #[test]
    fn packed_lines_skip_blank_lines_and_replace_invalid_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(PACKED_LOG);
        let mut log = Vec::new();
        log.extend_from_slice(packed("a", 0, 0).as_bytes());
        log.extend_from_slice(b"\r\n  \t\n\xc2\xa0\n");
        // A name with an invalid UTF-8 byte (`Q` overwritten): replaced, the record kept.
        let mut bad = packed("bQ", 1, 0).into_bytes();
        let q = bad.iter().position(|&b| b == b'Q').unwrap();
        bad[q] = 0xff;
        log.extend_from_slice(&bad);
        log.extend_from_slice(b"\n");
        log.extend_from_slice(packed("c", 2, 0).as_bytes());
        fs::write(&path, log).unwrap();
        let mut lines = PackedLines::open(&path).unwrap();
        let chunk = lines.next_chunk().unwrap().unwrap();
        let got: Vec<(u64, String)> = chunk
            .iter()
            .map(|l| (l.number, l.record.as_ref().unwrap().name.clone()))
            .collect();
        // Line 1 ends in CRLF; lines 2 (spaces and a tab) and 3 (a no-break space) are blank;
        // line 5 has no newline but is whole.
        assert_eq!(got[0], (1, "a".to_owned()));
        assert_eq!(got[1].0, 4);
        assert_eq!(got[1].1, "b\u{FFFD}");
        assert_eq!(got[2], (5, "c".to_owned()));
        assert_eq!(got.len(), 3);
        assert!(lines.next_chunk().unwrap().is_none());
    }

    fn streamed(d: &Path) -> (RunStream, Vec<RunRecord>) {
        let mut stream = RunStream::open(d, &RunOptions::default()).unwrap();
        let mut all = Vec::new();
        while let Some(chunk) = stream.next_chunk().unwrap() {
            assert!(!chunk.is_empty() && chunk.len() <= PACKED_CHUNK);
            all.extend(chunk);
        }
        (stream, all)
    }

    #[test]
    fn stream_reads_what_run_reads() {
        // A clean manifest directory streams; its records equal the Run's.
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(d, "a.trace", &ours("a", 0, 0));
        write(d, "b.trace", &ours("b", 1, 0));
        write(d, "a.1.trace", &ours("a", 2, 1));
        let manifest = [
            entry(0, "a", 0, "a.trace"),
            entry(1, "b", 0, "b.trace"),
            entry(2, "a", 1, "a.1.trace"),
        ]
        .join("\n")
            + "\n";
        write(d, MANIFEST_FILE, &manifest);
        let (stream, all) = streamed(d);
        assert!(matches!(stream.source, StreamSource::Manifest { .. }));
        assert_eq!(stream.order(), RunOrder::Manifest);
        assert_eq!(all, Run::open(d).unwrap().records());

        // An orphan record: read whole, with the Run's order and problems.
        write(d, "late.trace", &ours("late", 5, 0));
        let (stream, all) = streamed(d);
        assert!(matches!(stream.source, StreamSource::Loaded(_)));
        let run = Run::open(d).unwrap();
        assert_eq!(all, run.records());
        assert_eq!(stream.problems().len(), run.problems().len());
        assert_eq!(stream.problems().len(), 1);
    }

    #[test]
    fn stream_reads_a_packed_log_in_order_and_reports_what_it_skips() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let n = PACKED_CHUNK as u64 + 3;
        let mut log: String = (0..n).map(|i| packed("x", i, i) + "\n").collect();
        log += &(packed("y", 2, 0) + "\n"); // index goes back
        log += &(packed("x", n, 3) + "\n"); // occurrence repeats
        log += &(packed("y", n + 1, 0) + "\n");
        log += &packed("z", n + 2, 0)[..30]; // cut short
        write(d, PACKED_LOG, &log);
        let (stream, all) = streamed(d);
        assert_eq!(stream.order(), RunOrder::Packed);
        assert_eq!(all.len() as u64, n + 1);
        assert_eq!(all.last().unwrap().key(), ("y", 0));
        assert_eq!(all[7].file, "records.jsonl:8");
        let msgs: Vec<String> = stream.problems().iter().map(|p| p.to_string()).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("out of order"), "{}", msgs[0]);
        assert!(msgs[1].contains("duplicate occurrence 3"), "{}", msgs[1]);
        assert!(msgs[2].contains("cut short"), "{}", msgs[2]);
        let mut strict = RunStream::open(d, &RunOptions { strict: true }).unwrap();
        let err = std::iter::from_fn(|| strict.next_chunk().transpose())
            .find_map(|c| c.err())
            .unwrap();
        assert!(err.to_string().contains("out of order"), "{err}");
    }

    #[test]
    fn empty_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let msg = Run::open(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("no manifest.jsonl"), "{msg}");
        let msg = Run::open(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(msg.contains("nope"), "{msg}");
    }
}
