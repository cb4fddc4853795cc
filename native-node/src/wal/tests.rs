use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::segment::{HEADER_BYTES, encode_header, file_name};
use super::*;

const FRAME: usize = 8;

fn opts(segment_bytes: u64) -> WalOptions {
    WalOptions {
        segment_bytes,
        fsync: false,
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Distinct, variable-length payloads so that misordered or misframed
/// records cannot compare equal by accident.
fn payload(i: usize) -> Vec<u8> {
    (0..(i * 7) % 29 + 1)
        .map(|j| (i * 31 + j * 7) as u8)
        .collect()
}

fn write_wal(dir: &Path, o: WalOptions, payloads: &[Vec<u8>]) {
    let (mut wal, rec) = Wal::open(dir, o).unwrap();
    let base = wal.next_lsn();
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(wal.append(p).unwrap(), base + i as u64);
    }
    wal.sync().unwrap();
    drop(rec);
}

fn numbered(first_lsn: u64, payloads: &[Vec<u8>]) -> Vec<(u64, Vec<u8>)> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (first_lsn + i as u64, p.clone()))
        .collect()
}

/// Offset of each record's frame within a single-segment WAL holding `payloads`.
fn record_offsets(payloads: &[Vec<u8>]) -> Vec<usize> {
    let mut off = HEADER_BYTES;
    payloads
        .iter()
        .map(|p| {
            let start = off;
            off += FRAME + p.len();
            start
        })
        .collect()
}

/// Where the records of a single-segment WAL holding `payloads` end.
fn records_end(payloads: &[Vec<u8>]) -> usize {
    HEADER_BYTES + payloads.iter().map(|p| FRAME + p.len()).sum::<usize>()
}

/// Asserts that `path` holds `records` (the bytes up to the end of its records) and then
/// only zeros: preallocated space, or nothing.
fn assert_records_then_zeros(path: &Path, records: &[u8], ctx: &str) {
    let bytes = fs::read(path).unwrap();
    assert!(bytes.len() >= records.len(), "{ctx}: file too short");
    assert_eq!(&bytes[..records.len()], records, "{ctx}");
    assert!(
        bytes[records.len()..].iter().all(|&b| b == 0),
        "{ctx}: bytes after the records"
    );
}

/// Where the data of a file ends: after its last non-zero byte.
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x5a;
    fs::write(path, bytes).unwrap();
}

fn expect_corrupt(result: Result<(Wal, Recovery), WalError>) -> (PathBuf, u64, String) {
    match result {
        Err(WalError::Corrupt {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok((_, rec)) => panic!("expected Corrupt, got {} records", rec.records.len()),
    }
}

#[test]
fn append_sync_reopen_returns_same_records() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("wal");
    let (mut wal, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert!(rec.records.is_empty());
    assert_eq!(rec.torn_tail, None);
    assert_eq!(rec.segments, 1);
    assert_eq!(wal.next_lsn(), 1);

    assert_eq!(wal.append(b"first").unwrap(), 1);
    assert_eq!(wal.append(b"").unwrap(), 2);
    assert_eq!(wal.append(&[0xff; 1000]).unwrap(), 3);
    wal.sync().unwrap();
    assert_eq!(
        wal.disk_bytes(),
        (HEADER_BYTES + 3 * FRAME + 5 + 1000) as u64
    );
    drop(wal);

    let (mut wal, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(
        rec.records,
        vec![
            (1, b"first".to_vec()),
            (2, Vec::new()),
            (3, vec![0xff; 1000])
        ]
    );
    assert_eq!(rec.torn_tail, None);
    assert_eq!(wal.next_lsn(), 4);
    assert_eq!(wal.append(b"fourth").unwrap(), 4);
    wal.sync().unwrap();
    drop(wal);

    let (_, rec) = Wal::open(&dir, WalOptions::default()).unwrap();
    assert_eq!(rec.records.len(), 4);
    assert_eq!(rec.records[3], (4, b"fourth".to_vec()));
}

#[test]
fn appends_without_sync_are_not_persisted() {
    let tmp = TempDir::new().unwrap();
    let (mut wal, _) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    wal.append(b"synced").unwrap();
    wal.sync().unwrap();
    wal.append(b"never synced").unwrap();
    drop(wal);
    let (wal, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.records, vec![(1, b"synced".to_vec())]);
    assert_eq!(wal.next_lsn(), 2);
}

#[test]
fn rolls_over_small_segments_and_reopens_in_order() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (0..60).map(payload).collect();
    let (mut wal, _) = Wal::open(tmp.path(), opts(100)).unwrap();
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(wal.append(p).unwrap(), i as u64 + 1);
        if i % 7 == 0 {
            wal.sync().unwrap();
        }
    }
    wal.sync().unwrap();
    let files = segment_files(tmp.path());
    assert!(files.len() >= 5, "only {} segments", files.len());
    assert_eq!(wal.segment_count(), files.len());
    drop(wal);

    let (wal, rec) = Wal::open(tmp.path(), opts(100)).unwrap();
    assert_eq!(rec.records, numbered(1, &payloads));
    assert_eq!(rec.segments, files.len());
    assert_eq!(rec.torn_tail, None);
    assert_eq!(wal.next_lsn(), 61);

    // Each file is named after, and its header starts at, the LSN of its
    // first record.
    // Sealed segments end with their last record; only the newest one has preallocated
    // space after its records. The WAL counts record bytes, not that space.
    let mut expected_first = 1u64;
    let mut record_bytes = 0;
    for (i, f) in files.iter().enumerate() {
        let bytes = fs::read(f).unwrap();
        let header_lsn = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        assert_eq!(header_lsn, expected_first);
        assert_eq!(
            f.file_name().unwrap().to_str().unwrap(),
            file_name(expected_first)
        );
        let mut off = HEADER_BYTES;
        // Every payload here is at least one byte: a zero length is the preallocated space.
        while off < bytes.len() && bytes[off..off + 4] != [0; 4] {
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            off += FRAME + len;
            expected_first += 1;
        }
        if i + 1 < files.len() {
            assert_eq!(
                off,
                bytes.len(),
                "sealed segment {} ends with a record",
                f.display()
            );
        } else {
            assert!(bytes[off..].iter().all(|&b| b == 0));
        }
        record_bytes += off as u64;
    }
    assert_eq!(expected_first, 61);
    assert_eq!(wal.disk_bytes(), record_bytes);
}

/// Cuts the single segment at every possible length: inside the header,
/// inside a record header, inside a payload and exactly on boundaries.
#[test]
fn torn_tail_at_every_cut_point_is_truncated_and_appendable() {
    let payloads: Vec<Vec<u8>> = (0..4).map(payload).collect();
    let offsets = record_offsets(&payloads);
    let ends: Vec<usize> = offsets
        .iter()
        .zip(&payloads)
        .map(|(o, p)| o + FRAME + p.len())
        .collect();
    let full_len = *ends.last().unwrap();

    for cut in 0..full_len {
        let tmp = TempDir::new().unwrap();
        write_wal(tmp.path(), opts(1 << 20), &payloads);
        let seg = tmp.path().join(file_name(1));
        let original = fs::read(&seg).unwrap();
        assert!(original[full_len..].iter().all(|&b| b == 0));
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(cut as u64)
            .unwrap();

        let complete = ends.iter().filter(|&&e| e <= cut).count();
        let keep = if cut < HEADER_BYTES {
            0
        } else {
            ends[..complete].last().copied().unwrap_or(HEADER_BYTES)
        };
        let expected_torn = (cut != keep).then(|| TornTail {
            file: seg.clone(),
            offset: keep as u64,
            dropped_bytes: (data_end(&original[..cut]).max(keep) - keep) as u64,
        });
        let expected_torn = if cut == 0 {
            // An empty last segment is torn too (crash right after create).
            Some(TornTail {
                file: seg.clone(),
                offset: 0,
                dropped_bytes: 0,
            })
        } else {
            expected_torn
        };

        let (mut wal, rec) =
            Wal::open(tmp.path(), opts(1 << 20)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(
            rec.records,
            numbered(1, &payloads[..complete]),
            "cut at {cut}"
        );
        assert_eq!(rec.torn_tail, expected_torn, "cut at {cut}");
        assert_records_then_zeros(
            &seg,
            &original[..keep.max(HEADER_BYTES)],
            &format!("cut at {cut}"),
        );

        let lsn = wal.append(b"after recovery").unwrap();
        assert_eq!(lsn, complete as u64 + 1, "cut at {cut}");
        wal.sync().unwrap();
        drop(wal);

        let (_, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
        let mut expected = numbered(1, &payloads[..complete]);
        expected.push((lsn, b"after recovery".to_vec()));
        assert_eq!(rec.records, expected, "reopen after cut at {cut}");
        assert_eq!(rec.torn_tail, None, "reopen after cut at {cut}");
    }
}

#[test]
fn torn_tail_in_last_of_several_segments_with_fsync() {
    let tmp = TempDir::new().unwrap();
    let o = WalOptions {
        segment_bytes: 120,
        fsync: true,
    };
    let payloads: Vec<Vec<u8>> = (0..20).map(payload).collect();
    write_wal(tmp.path(), o.clone(), &payloads);
    // Seal the active segment (a no-op when the last roll left it empty).
    let (mut wal, _) = Wal::open(tmp.path(), o.clone()).unwrap();
    wal.roll().unwrap();
    drop(wal);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    let last = files.last().unwrap();
    // The active segment is empty; put one more record in it and tear the
    // middle of its payload.
    assert_records_then_zeros(last, &encode_header(21), "the empty active segment");
    let (mut wal, _) = Wal::open(tmp.path(), o.clone()).unwrap();
    wal.append(&[7u8; 50]).unwrap();
    wal.sync().unwrap();
    drop(wal);
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(HEADER_BYTES as u64 + 30)
        .unwrap();

    let (mut wal, rec) = Wal::open(tmp.path(), o.clone()).unwrap();
    assert_eq!(rec.records, numbered(1, &payloads));
    assert_eq!(
        rec.torn_tail,
        Some(TornTail {
            file: last.clone(),
            offset: HEADER_BYTES as u64,
            dropped_bytes: 30,
        })
    );
    assert_eq!(wal.append(b"x").unwrap(), 21);
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = Wal::open(tmp.path(), o).unwrap();
    assert_eq!(rec.records.len(), 21);
    assert_eq!(rec.records[20], (21, b"x".to_vec()));
}

#[test]
fn flipped_payload_byte_in_middle_of_last_segment_is_corrupt() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (1..6).map(payload).collect();
    write_wal(tmp.path(), opts(1 << 20), &payloads);
    let seg = tmp.path().join(file_name(1));
    let offsets = record_offsets(&payloads);
    flip_byte(&seg, offsets[2] + FRAME + 1);
    let damaged = fs::read(&seg).unwrap();

    let err = Wal::open(tmp.path(), opts(1 << 20)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "corrupt WAL segment {} at offset {}: checksum mismatch",
            seg.display(),
            offsets[2]
        )
    );
    let (file, offset, _) = expect_corrupt(Err(err));
    assert_eq!(file, seg);
    assert_eq!(offset, offsets[2] as u64);
    // Nothing was truncated: refusing to start must leave the evidence alone.
    assert_eq!(fs::read(&seg).unwrap(), damaged);
}

#[test]
fn flipped_byte_in_non_last_segment_is_corrupt() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (0..30).map(payload).collect();
    write_wal(tmp.path(), opts(100), &payloads);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    // The final byte of the first segment belongs to its last record, which
    // would count as a torn write if this were the newest segment.
    let first = &files[0];
    let len = fs::metadata(first).unwrap().len() as usize;
    flip_byte(first, len - 1);

    let (file, offset, reason) = expect_corrupt(Wal::open(tmp.path(), opts(100)));
    assert_eq!(&file, first);
    assert!(offset >= HEADER_BYTES as u64 && (offset as usize) < len);
    assert_eq!(reason, "checksum mismatch");
}

/// A bad checksum on the very last record, ending exactly at EOF, looks the
/// same as a crash that persisted the frame but only part of the payload:
/// the write was never acknowledged as synced, so dropping it is safe, and
/// refusing to start would turn every torn write into an outage.
#[test]
fn flipped_byte_in_last_record_is_torn_tail() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (1..6).map(payload).collect();
    write_wal(tmp.path(), opts(1 << 20), &payloads);
    let seg = tmp.path().join(file_name(1));
    let offsets = record_offsets(&payloads);
    let original = fs::read(&seg).unwrap();
    let end = records_end(&payloads);
    flip_byte(&seg, offsets[4] + FRAME);

    let (_, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.records, numbered(1, &payloads[..4]));
    assert_eq!(
        rec.torn_tail,
        Some(TornTail {
            file: seg.clone(),
            offset: offsets[4] as u64,
            dropped_bytes: (data_end(&original[..end]) - offsets[4]) as u64,
        })
    );
    assert_records_then_zeros(&seg, &original[..offsets[4]], "torn record cut");
}

#[test]
fn bad_magic_and_version_are_corrupt() {
    for (offset, needle) in [(0, "bad magic"), (7, "unsupported WAL format version")] {
        let tmp = TempDir::new().unwrap();
        write_wal(tmp.path(), opts(1 << 20), &[b"a".to_vec(), b"b".to_vec()]);
        let seg = tmp.path().join(file_name(1));
        flip_byte(&seg, offset);
        let (file, off, reason) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
        assert_eq!(file, seg);
        assert_eq!(off, 0);
        assert!(reason.contains(needle), "{reason}");
    }
}

#[test]
fn header_lsn_must_match_file_name() {
    let tmp = TempDir::new().unwrap();
    write_wal(tmp.path(), opts(1 << 20), &[b"a".to_vec()]);
    let seg = tmp.path().join(file_name(1));
    flip_byte(&seg, 8);
    let (_, off, reason) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
    assert_eq!(off, 0);
    assert!(reason.contains("file name"), "{reason}");
}

#[test]
fn missing_middle_segment_is_corrupt() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (0..30).map(payload).collect();
    write_wal(tmp.path(), opts(100), &payloads);
    let files = segment_files(tmp.path());
    assert!(files.len() >= 3);
    fs::remove_file(&files[1]).unwrap();
    let (file, offset, reason) = expect_corrupt(Wal::open(tmp.path(), opts(100)));
    assert_eq!(file, files[2]);
    assert_eq!(offset, 0);
    assert!(reason.contains("LSN discontinuity"), "{reason}");
}

/// A damaged length field that overruns EOF would look like a torn write
/// and silently swallow every later record; the intact final record gives
/// it away.
#[test]
fn damaged_length_in_middle_of_last_segment_is_corrupt() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (1..6).map(payload).collect();
    write_wal(tmp.path(), opts(1 << 20), &payloads);
    let seg = tmp.path().join(file_name(1));
    let offsets = record_offsets(&payloads);

    // Overrunning EOF but below the maximum.
    flip_byte(&seg, offsets[1] + 1);
    let (file, offset, reason) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
    assert_eq!((file, offset), (seg.clone(), offsets[1] as u64));
    assert!(reason.contains("length field is damaged"), "{reason}");
    assert!(reason.contains("intact record"), "{reason}");

    // Above the maximum: never produced by a torn write.
    let mut bytes = fs::read(&seg).unwrap();
    bytes[offsets[1]..offsets[1] + 4].copy_from_slice(&(MAX_RECORD_BYTES as u32 + 1).to_le_bytes());
    fs::write(&seg, bytes).unwrap();
    let (_, offset, reason) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
    assert_eq!(offset, offsets[1] as u64);
    assert!(reason.contains("exceeds"), "{reason}");
}

#[test]
fn empty_or_partial_header_last_segment_is_recreated() {
    for partial in [0usize, 1, 7, 15] {
        let tmp = TempDir::new().unwrap();
        let payloads: Vec<Vec<u8>> = (0..12).map(payload).collect();
        write_wal(tmp.path(), opts(100), &payloads);
        // A crash while rolling leaves the next segment with an incomplete
        // header (a no-op roll when the last one left the active segment empty).
        let (mut wal, _) = Wal::open(tmp.path(), opts(100)).unwrap();
        wal.roll().unwrap();
        let next = wal.next_lsn();
        drop(wal);
        let last = tmp.path().join(file_name(next));
        let header = encode_header(next);
        assert_records_then_zeros(&last, &header, "the new segment");
        fs::write(&last, &header[..partial]).unwrap();

        let (mut wal, rec) = Wal::open(tmp.path(), opts(100)).unwrap();
        assert_eq!(rec.records, numbered(1, &payloads));
        assert_eq!(
            rec.torn_tail,
            Some(TornTail {
                file: last.clone(),
                offset: 0,
                dropped_bytes: data_end(&header[..partial]) as u64,
            })
        );
        assert_records_then_zeros(&last, &header, "header rewritten");
        assert_eq!(wal.append(b"z").unwrap(), next);
        wal.sync().unwrap();
        drop(wal);
        let (_, rec) = Wal::open(tmp.path(), opts(100)).unwrap();
        assert_eq!(rec.records.last().unwrap(), &(next, b"z".to_vec()));
        assert_eq!(rec.torn_tail, None);
    }
}

#[test]
fn truncated_header_in_non_last_segment_is_corrupt() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (0..12).map(payload).collect();
    write_wal(tmp.path(), opts(100), &payloads);
    let files = segment_files(tmp.path());
    fs::write(&files[0], b"KVWAL").unwrap();
    let (file, offset, _) = expect_corrupt(Wal::open(tmp.path(), opts(100)));
    assert_eq!((file, offset), (files[0].clone(), 0));
}

/// Filesystems can expose a zero-filled extent when a crash persisted the
/// new file size but not the data; the newest segment also ends in zeros
/// by design (preallocated space). Either way the zeros are the end of the
/// records, not damage, and appends land right after the records.
#[test]
fn zero_filled_tail_is_the_end_of_the_records() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (1..4).map(payload).collect();
    write_wal(tmp.path(), opts(1 << 20), &payloads);
    let seg = tmp.path().join(file_name(1));
    let original = fs::read(&seg).unwrap();
    assert_eq!(original.len(), 1 << 20, "the segment is preallocated");
    let end = records_end(&payloads);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);

    let (mut wal, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.records, numbered(1, &payloads));
    assert_eq!(rec.torn_tail, None);
    assert_eq!(wal.append(b"next").unwrap(), 4);
    wal.sync().unwrap();
    drop(wal);
    let bytes = fs::read(&seg).unwrap();
    assert_eq!(bytes[..end], original[..end]);
    assert_eq!(
        &bytes[end..end + FRAME + 4][FRAME..],
        b"next",
        "the append follows the records"
    );
    let (_, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.records.len(), 4);
    assert_eq!(rec.torn_tail, None);
}

#[test]
fn unexpected_wal_file_name_is_corrupt() {
    let tmp = TempDir::new().unwrap();
    write_wal(tmp.path(), opts(1 << 20), &[b"a".to_vec()]);
    fs::write(tmp.path().join("backup.wal"), b"").unwrap();
    fs::write(tmp.path().join("notes.txt"), b"ignored").unwrap();
    let (file, _, _) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
    assert_eq!(file, tmp.path().join("backup.wal"));
}

#[test]
fn remove_segments_before_deletes_only_fully_covered_segments() {
    let tmp = TempDir::new().unwrap();
    let o = WalOptions {
        segment_bytes: 100,
        fsync: true,
    };
    let payloads: Vec<Vec<u8>> = (0..40).map(payload).collect();
    let (mut wal, _) = Wal::open(tmp.path(), o.clone()).unwrap();
    for p in &payloads {
        wal.append(p).unwrap();
    }
    wal.sync().unwrap();

    let firsts: Vec<u64> = segment_files(tmp.path())
        .iter()
        .map(|f| f.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    assert!(firsts.len() >= 4);
    assert_eq!(wal.remove_segments_before(1).unwrap(), 0);
    assert_eq!(wal.remove_segments_before(firsts[1] - 1).unwrap(), 0);

    // An LSN inside the third segment: the first two are fully below it,
    // the third still holds records the snapshot does not cover.
    let cut = firsts[2] + 1;
    assert!(cut < firsts[3]);
    assert_eq!(wal.remove_segments_before(cut).unwrap(), 2);
    let remaining: Vec<u64> = segment_files(tmp.path())
        .iter()
        .map(|f| f.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(remaining, firsts[2..]);
    assert_eq!(wal.first_lsn(), firsts[2]);
    assert_eq!(wal.segment_count(), remaining.len());
    assert_eq!(wal.append(b"next").unwrap(), 41);
    wal.sync().unwrap();
    drop(wal);

    let (mut wal, rec) = Wal::open(tmp.path(), o.clone()).unwrap();
    let start = firsts[2] as usize - 1;
    let mut expected = numbered(firsts[2], &payloads[start..]);
    expected.push((41, b"next".to_vec()));
    assert_eq!(rec.records, expected);
    assert_eq!(wal.next_lsn(), 42);

    // Even covering everything, the active segment survives.
    let sealed = wal.segment_count() - 1;
    assert_eq!(wal.remove_segments_before(u64::MAX).unwrap(), sealed);
    assert_eq!(wal.segment_count(), 1);
    assert_eq!(segment_files(tmp.path()).len(), 1);
    assert_eq!(wal.append(b"still here").unwrap(), 42);
    wal.sync().unwrap();
    drop(wal);
    let (wal, rec) = Wal::open(tmp.path(), o).unwrap();
    assert_eq!(rec.records.last().unwrap(), &(42, b"still here".to_vec()));
    assert_eq!(wal.next_lsn(), 43);
}

#[test]
fn oversized_append_is_rejected_without_side_effects() {
    let tmp = TempDir::new().unwrap();
    let (mut wal, _) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    let big = vec![0u8; MAX_RECORD_BYTES + 1];
    match wal.append(&big) {
        Err(WalError::RecordTooLarge { len, max, .. }) => {
            assert_eq!((len, max), (MAX_RECORD_BYTES + 1, MAX_RECORD_BYTES));
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert_eq!(wal.next_lsn(), 1);
    assert_eq!(wal.append(b"ok").unwrap(), 1);
    wal.sync().unwrap();
    drop(wal);
    let (_, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert_eq!(rec.records, vec![(1, b"ok".to_vec())]);
}

#[test]
fn lsn_space_exhaustion_is_an_error_not_a_panic() {
    let tmp = TempDir::new().unwrap();
    let seg = tmp.path().join(file_name(u64::MAX));
    fs::write(&seg, encode_header(u64::MAX)).unwrap();
    let (mut wal, rec) = Wal::open(tmp.path(), opts(1 << 20)).unwrap();
    assert!(rec.records.is_empty());
    assert_eq!(wal.next_lsn(), u64::MAX);
    assert!(matches!(
        wal.append(b"x"),
        Err(WalError::LsnExhausted { .. })
    ));
    drop(wal);

    // A record in that segment would need LSN u64::MAX and leave no next LSN.
    let mut bytes = encode_header(u64::MAX).to_vec();
    super::record::encode_into(&mut bytes, b"x").unwrap();
    fs::write(&seg, bytes).unwrap();
    let (_, _, reason) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
    assert!(reason.contains("overflow"), "{reason}");
}

#[test]
fn data_dir_lock_is_exclusive_and_released_on_drop() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("node1");
    let lock = DataDirLock::acquire(&dir).unwrap();
    assert_eq!(lock.path(), dir.join("LOCK"));
    let pid = fs::read_to_string(dir.join("LOCK")).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string());

    let err = DataDirLock::acquire(&dir).unwrap_err();
    assert!(matches!(&err, LockError::Locked { path, .. } if *path == dir.join("LOCK")));
    assert_eq!(
        err.to_string(),
        format!(
            "data directory {} is locked by another keyval process ({})",
            dir.display(),
            dir.join("LOCK").display()
        )
    );
    // The failed attempt must not have clobbered the holder's pid.
    assert_eq!(fs::read_to_string(dir.join("LOCK")).unwrap(), pid);

    drop(lock);
    let again = DataDirLock::acquire(&dir).unwrap();
    drop(again);
}

#[test]
fn lock_io_error_names_the_path() {
    let tmp = TempDir::new().unwrap();
    let file = tmp.path().join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = DataDirLock::acquire(&file).unwrap_err();
    assert!(matches!(err, LockError::Io { .. }));
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// splitmix64: enough randomness for fuzzing, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random byte damage must never panic, never reorder or alter records, and
/// never lose anything except a suffix; repairs must be idempotent.
#[test]
fn fuzz_random_byte_damage_yields_prefix_or_corrupt() {
    let mut rng = Rng(0x6b65_7976_616c_0001);
    let (mut ok, mut corrupt, mut torn) = (0, 0, 0);
    for iter in 0..500 {
        let tmp = TempDir::new().unwrap();
        let segment_bytes = [64, 256, 1 << 20][rng.below(3) as usize];
        let o = opts(segment_bytes);
        let payloads: Vec<Vec<u8>> = (0..rng.below(40) + 1)
            .map(|_| {
                let len = rng.below(80) as usize;
                (0..len).map(|_| rng.next() as u8).collect()
            })
            .collect();
        write_wal(tmp.path(), o.clone(), &payloads);

        let files = segment_files(tmp.path());
        // Half the time aim at the end of the newest segment, where damage
        // can legitimately be a torn write, so both outcomes get exercised.
        let near_tail = rng.below(2) == 0;
        for _ in 0..rng.below(3) + 1 {
            let f = match near_tail {
                true => files.last().unwrap(),
                false => &files[rng.below(files.len() as u64) as usize],
            };
            let mut bytes = fs::read(f).unwrap();
            // The records' bytes, not the newest segment's preallocated zeros.
            let len = data_end(&bytes).max(HEADER_BYTES) as u64;
            let at = match near_tail {
                true => len - 1 - rng.below(len.min(48)),
                false => rng.below(len),
            } as usize;
            bytes[at] ^= (rng.below(255) + 1) as u8;
            fs::write(f, bytes).unwrap();
        }

        match Wal::open(tmp.path(), o.clone()) {
            Ok((mut wal, rec)) => {
                ok += 1;
                torn += usize::from(rec.torn_tail.is_some());
                assert!(rec.records.len() <= payloads.len(), "iter {iter}");
                assert_eq!(
                    rec.records,
                    numbered(1, &payloads[..rec.records.len()]),
                    "iter {iter}"
                );
                let lsn = wal.append(b"post").unwrap();
                assert_eq!(lsn, rec.records.len() as u64 + 1, "iter {iter}");
                wal.sync().unwrap();
                drop(wal);
                let (_, again) = Wal::open(tmp.path(), o).unwrap();
                assert_eq!(again.torn_tail, None, "iter {iter}");
                assert_eq!(again.records.len(), rec.records.len() + 1, "iter {iter}");
                assert_eq!(again.records[..rec.records.len()], rec.records[..]);
            }
            Err(WalError::Corrupt { .. }) => corrupt += 1,
            Err(other) => panic!("iter {iter}: unexpected error {other}"),
        }
    }
    // Make sure the seed exercises both outcomes.
    assert!(
        ok > 50 && corrupt > 50 && torn > 50,
        "ok={ok} corrupt={corrupt} torn={torn}"
    );
}

/// Damage to records an earlier fsync already made durable is not a torn write: recovery
/// must stop with the file and offset instead of cutting acknowledged records off. Damage
/// past the synced length (the last batch) is still a torn tail.
#[test]
fn damaged_synced_records_are_corrupt_not_a_torn_tail() {
    let o = WalOptions {
        segment_bytes: 1 << 20,
        fsync: true,
    };
    let write = |dir: &Path| {
        let (mut wal, _) = Wal::open(dir, o.clone()).unwrap();
        for batch in [[1u8; 40], [2u8; 40], [3u8; 40]] {
            wal.append(&batch).unwrap();
            wal.sync().unwrap();
        }
    };
    let seg = |dir: &Path| dir.join(file_name(1));
    let first = HEADER_BYTES;
    let third = HEADER_BYTES + 2 * (FRAME + 40);

    // The file lost its synced end (e.g. a filesystem rolled the size back).
    let tmp = TempDir::new().unwrap();
    write(tmp.path());
    OpenOptions::new()
        .write(true)
        .open(seg(tmp.path()))
        .unwrap()
        .set_len((first + 20) as u64)
        .unwrap();
    let (file, offset, reason) = expect_corrupt(Wal::open(tmp.path(), o.clone()));
    assert_eq!(file, seg(tmp.path()));
    assert_eq!(offset, (first + 20) as u64);
    assert!(reason.contains("synced"), "{reason}");

    // Synced records zeroed out to the end: looks like an unwritten extent, but was synced.
    let tmp = TempDir::new().unwrap();
    write(tmp.path());
    let mut bytes = fs::read(seg(tmp.path())).unwrap();
    bytes[first..].fill(0);
    fs::write(seg(tmp.path()), bytes).unwrap();
    let (_, offset, reason) = expect_corrupt(Wal::open(tmp.path(), o.clone()));
    assert_eq!(offset, first as u64);
    assert!(reason.contains("synced part"), "{reason}");

    // The last batch torn: its length was never recorded as synced, so it is cut off.
    let tmp = TempDir::new().unwrap();
    write(tmp.path());
    flip_byte(&seg(tmp.path()), third + FRAME + 5);
    let (_, rec) = Wal::open(tmp.path(), o.clone()).unwrap();
    assert_eq!(rec.records.len(), 2);
    assert_eq!(rec.torn_tail.map(|t| t.offset), Some(third as u64));
}

/// The preallocated space after the newest segment's records is zeros until an append lands
/// there, so a stray non-zero byte far past the records is damage no torn append explains:
/// recovery stops instead of guessing.
#[test]
fn stray_bytes_in_the_preallocated_space_are_corrupt() {
    let tmp = TempDir::new().unwrap();
    let payloads: Vec<Vec<u8>> = (1..4).map(payload).collect();
    write_wal(tmp.path(), opts(1 << 20), &payloads);
    let seg = tmp.path().join(file_name(1));
    let end = records_end(&payloads);
    flip_byte(&seg, end + 1000);
    let (file, offset, reason) = expect_corrupt(Wal::open(tmp.path(), opts(1 << 20)));
    assert_eq!((file, offset), (seg, end as u64));
    assert_eq!(reason, "checksum mismatch");
}
