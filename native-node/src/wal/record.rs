//! Record framing: `[len: u32 LE][crc32c: u32 LE][payload]`.
//!
//! The checksum covers the length bytes as well as the payload so that a
//! damaged length field cannot make a shorter or longer slice of the file
//! verify by accident.

/// Size of the per-record frame header that precedes every payload.
pub const RECORD_HEADER_BYTES: usize = 8;

/// Upper bound on one record's payload.
///
/// The bound exists for the reader as much as for the writer: a length field
/// above it cannot have been produced by this code, so recovery can call it
/// corruption instead of trusting it and allocating or skipping gigabytes.
/// 64 MiB is far above any Raft entry or snapshot chunk KeyVal writes.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// What lies at a given offset of a segment's byte image.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decoded<'a> {
    /// A complete record whose checksum verifies; `next` is where the
    /// following record starts.
    Record { payload: &'a [u8], next: usize },
    /// Fewer than [`RECORD_HEADER_BYTES`] bytes remain.
    PartialHeader,
    /// The length field is above [`MAX_RECORD_BYTES`].
    TooLarge { len: u32 },
    /// The length field is plausible but the payload runs past the end.
    PastEnd { len: u32 },
    /// The record fits but its checksum does not verify; `next` is where it
    /// claims to end.
    BadChecksum { next: usize },
}

pub(super) fn checksum(len_le: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_le), payload)
}

/// Appends one framed record to `buf`.
///
/// The caller has already rejected payloads above [`MAX_RECORD_BYTES`]; the
/// length is still converted fallibly so a future change to that bound cannot
/// silently truncate the frame.
pub(super) fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) -> Result<(), usize> {
    let len = u32::try_from(payload.len()).map_err(|_| payload.len())?;
    let len_le = len.to_le_bytes();
    buf.reserve(RECORD_HEADER_BYTES + payload.len());
    buf.extend_from_slice(&len_le);
    buf.extend_from_slice(&checksum(len_le, payload).to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

/// Parses the record starting at `off`, never panicking whatever `bytes` holds.
pub(super) fn decode_at(bytes: &[u8], off: usize) -> Decoded<'_> {
    let Some(rest) = bytes.get(off..) else {
        return Decoded::PartialHeader;
    };
    let Some(hdr) = rest.first_chunk::<RECORD_HEADER_BYTES>() else {
        return Decoded::PartialHeader;
    };
    let len_le = [hdr[0], hdr[1], hdr[2], hdr[3]];
    let stored_crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    let len = u32::from_le_bytes(len_le);
    let Some(len_usize) = usize::try_from(len).ok().filter(|&l| l <= MAX_RECORD_BYTES) else {
        return Decoded::TooLarge { len };
    };
    let Some(payload) = rest.get(RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len_usize) else {
        return Decoded::PastEnd { len };
    };
    // Cannot overflow: `payload` is a sub-slice of `bytes`, so this is at most `bytes.len()`.
    let next = off + RECORD_HEADER_BYTES + len_usize;
    if checksum(len_le, payload) != stored_crc {
        return Decoded::BadChecksum { next };
    }
    Decoded::Record { payload, next }
}

/// Looks for an intact record that starts at or after `from` and ends the data: at or after
/// `data_end` (the end of the last non-zero byte), with only zeros after it.
///
/// Used to tell a damaged length field from a torn write: a torn write only ever loses the end
/// of what was written (the rest reads as zeros: past the end of the file, an unwritten
/// extent, or preallocated space), so if a later, checksummed record finishes the data, the
/// damaged record before it is not the torn end and its length must be corrupt. Only offsets
/// whose length field points into that final stretch are checksummed, so the scan is linear
/// in the tail size.
pub(super) fn intact_record_ending_the_data(
    bytes: &[u8],
    from: usize,
    data_end: usize,
) -> Option<usize> {
    let last_start = bytes.len().checked_sub(RECORD_HEADER_BYTES)?;
    (from..=last_start.min(data_end)).find(|&p| {
        let Some(len_le) = bytes.get(p..).and_then(|r| r.first_chunk::<4>()) else {
            return false;
        };
        let len = u32::from_le_bytes(*len_le);
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| p.checked_add(RECORD_HEADER_BYTES)?.checked_add(l));
        end.is_some_and(|e| e >= data_end && e <= bytes.len())
            && matches!(decode_at(bytes, p), Decoded::Record { .. })
    })
}
