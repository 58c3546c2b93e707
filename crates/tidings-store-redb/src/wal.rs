//! The append log in front of redb (`<store file>.log`): what makes an acknowledged append
//! durable. The writer appends a group's events here with one `write` (and in durable mode one
//! `fdatasync`), answers, and indexes them into redb later in one big transaction; once that
//! transaction is durable the log is reset to empty. At open, frames redb does not hold yet
//! are indexed (`RedbStore::open`).
//!
//! # Format
//! ```text
//! header  8 bytes  "TDGLOG\0\x01"
//!         salt u32 LE    chosen at random each time the store opens
//! frame   len u32 LE     length of the event bytes
//!         crc u32 LE     CRC-32 (crc32fast) over the salt, len, seq and the event bytes
//!         seq u64 LE
//!         event          `schema::encode_event`, `len` bytes
//! ```
//! Frames carry contiguous seqs. A scan stops at the first frame that is cut short, fails its
//! CRC, is longer than [`MAX_FRAME`], or does not carry the seq after the previous one: in
//! durable mode nothing from there on was acknowledged (the `fdatasync` that would have
//! acknowledged it did not finish), so it is dropped.
//!
//! # Reuse
//! `fdatasync` of a write that grows a file also commits the file system's journal (the new
//! size and blocks); overwriting blocks already written does not. Measured on the
//! development VM (ext4, virtio): 4 KiB write + `fdatasync` 740–1,320 µs growing the file,
//! 370–410 µs overwriting it. So the log is created at [`PRESIZE`] bytes of zeros and a reset
//! only moves the write position back to the first frame: the frames of earlier rounds stay
//! behind the new ones, and fail the seq check (their seqs are all lower: redb holds them).
//! At open, after recovery, the header gets a new salt: every frame written before, including
//! frames a scan dropped (a torn write, damage) whose seqs may be higher, then fails its CRC
//! and can never be read as the continuation of later ones.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tidings_core::StoreError;

/// The first bytes of every log file.
pub(crate) const MAGIC: &[u8; 8] = b"TDGLOG\0\x01";

/// Bytes before the first frame: the magic and the salt.
pub(crate) const HEADER: usize = MAGIC.len() + 4;

/// Bytes before a frame's event bytes.
pub(crate) const FRAME_HEADER: usize = 4 + 4 + 8;

/// Size the log is created at (zeros); it grows past this only while one round of frames
/// does, and `writer::INDEX_BYTES` keeps a round well below it.
pub(crate) const PRESIZE: u64 = 4 << 20;

/// Longest event a frame may carry: a length above this is damage, not an event (the hub's
/// publish limits are far below it).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// The log file of the store file at `store`: the same name with `.log` appended.
pub(crate) fn path_of(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// Appends the frame of event `seq` (its `encode_event` bytes) to `out`, for a log whose
/// header carries `salt`.
pub(crate) fn put_frame(out: &mut Vec<u8>, salt: u32, seq: u64, event: &[u8]) {
    // Events are bounded by the hub's publish limits, far below MAX_FRAME.
    let len = (event.len() as u32).to_le_bytes();
    let seq = seq.to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&len);
    crc.update(&seq);
    crc.update(event);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq);
    out.extend_from_slice(event);
}

/// One frame read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) seq: u64,
    pub(crate) event: &'a [u8],
}

/// What a scan of a log's bytes found.
#[derive(Debug, Default)]
pub(crate) struct Scan<'a> {
    /// The valid frames, contiguous seqs, in order.
    pub(crate) frames: Vec<Frame<'a>>,
}

/// Scans a whole log file's bytes (header included).
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan<'_>, StoreError> {
    if bytes.is_empty() {
        return Ok(Scan::default());
    }
    let magic = &bytes[..bytes.len().min(MAGIC.len())];
    if !MAGIC.starts_with(magic) {
        return Err(StoreError::Corrupt(
            "the store's log file does not start with the log header".into(),
        ));
    }
    // A header cut short can only be a file whose creation did not finish.
    let Some(salt) = bytes.get(MAGIC.len()..HEADER) else {
        return Ok(Scan::default());
    };
    let salt: [u8; 4] = salt.try_into().unwrap_or_default();
    let mut pos = HEADER;
    let mut frames: Vec<Frame<'_>> = Vec::new();
    while let Some((frame, next)) = frame_at(bytes, salt, pos) {
        if frames
            .last()
            .is_some_and(|last| last.seq.checked_add(1) != Some(frame.seq))
        {
            break;
        }
        frames.push(frame);
        pos = next;
    }
    Ok(Scan { frames })
}

/// The frame at `pos` and the position after it, if a whole, intact one is there.
fn frame_at(bytes: &[u8], salt: [u8; 4], pos: usize) -> Option<(Frame<'_>, usize)> {
    let header = bytes.get(pos..pos.checked_add(FRAME_HEADER)?)?;
    let len: [u8; 4] = header[..4].try_into().ok()?;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq: [u8; 8] = header[8..16].try_into().ok()?;
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return None;
    }
    let start = pos + FRAME_HEADER;
    let event = bytes.get(start..start.checked_add(n)?)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&salt);
    h.update(&len);
    h.update(&seq);
    h.update(event);
    if h.finalize() != crc {
        return None;
    }
    Some((
        Frame {
            seq: u64::from_le_bytes(seq),
            event,
        },
        start + n,
    ))
}

/// The open log file, written only by the writer thread.
#[derive(Debug)]
pub(crate) struct Log {
    file: File,
    /// Where the next frame goes (after the header and this round's frames).
    len: u64,
    /// This open's salt (see "Reuse").
    salt: u32,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

impl Log {
    /// Opens (or creates) the log at `path` and returns it with its whole contents, to be
    /// scanned and indexed, then `start`ed, before the first append.
    pub(crate) fn open(path: &Path) -> Result<(Log, Vec<u8>), StoreError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("cannot open the log", path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io("cannot read the log", path, e))?;
        Ok((
            Log {
                file,
                len: 0,
                salt: 0,
            },
            bytes,
        ))
    }

    /// Starts the log for this open, once redb durably holds everything it held: zeros up to
    /// [`PRESIZE`] if it is shorter, and a header with the new `salt`, durably.
    pub(crate) fn start(&mut self, salt: u32) -> std::io::Result<()> {
        let size = self.file.metadata()?.len();
        if size < PRESIZE {
            let zeros = vec![0u8; 1 << 20];
            self.file.seek(SeekFrom::Start(size))?;
            let mut written = size;
            while written < PRESIZE {
                let n = zeros.len().min((PRESIZE - written) as usize);
                self.file.write_all(&zeros[..n])?;
                written += n as u64;
            }
        }
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(MAGIC)?;
        self.file.write_all(&salt.to_le_bytes())?;
        self.file.sync_all()?;
        self.salt = salt;
        self.len = HEADER as u64;
        Ok(())
    }

    /// This open's salt, for `put_frame`.
    pub(crate) fn salt(&self) -> u32 {
        self.salt
    }

    /// Starts a new round at the first frame, once redb durably holds everything the log
    /// holds. The old frames stay behind the new ones (see "Reuse" above).
    pub(crate) fn reset(&mut self) -> std::io::Result<()> {
        if self.len != HEADER as u64 {
            self.file.seek(SeekFrom::Start(HEADER as u64))?;
            self.len = HEADER as u64;
        }
        Ok(())
    }

    /// Appends `frames` with one write. On failure the position goes back to where it was,
    /// so a later append overwrites the partial frame.
    pub(crate) fn append(&mut self, frames: &[u8]) -> std::io::Result<()> {
        match self.file.write_all(frames) {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _back = self.file.seek(SeekFrom::Start(self.len));
                Err(e)
            }
        }
    }

    /// Makes what was appended durable (`fdatasync`).
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u32 = 0x5eed_0001;

    fn log_of(frames: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&SALT.to_le_bytes());
        for (seq, event) in frames {
            put_frame(&mut out, SALT, *seq, event);
        }
        out
    }

    #[test]
    fn frames_round_trip_and_stop_at_a_torn_tail() {
        let bytes = log_of(&[(5, b"abc"), (6, b""), (7, b"hello")]);
        let scan = scan(&bytes).unwrap();
        assert_eq!(
            scan.frames,
            vec![
                Frame {
                    seq: 5,
                    event: b"abc"
                },
                Frame { seq: 6, event: b"" },
                Frame {
                    seq: 7,
                    event: b"hello"
                }
            ]
        );
        // Every cut inside the last frame drops exactly that frame.
        let second_end = log_of(&[(5, b"abc"), (6, b"")]).len();
        for cut in second_end..bytes.len() {
            let s = super::scan(&bytes[..cut]).unwrap();
            assert_eq!(s.frames.len(), 2, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_byte_drops_its_frame_and_everything_after() {
        let bytes = log_of(&[(1, b"one"), (2, b"two"), (3, b"three")]);
        let first_end = log_of(&[(1, b"one")]).len();
        let second_end = log_of(&[(1, b"one"), (2, b"two")]).len();
        for at in first_end..second_end {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let s = scan(&bad).unwrap();
            assert_eq!(
                s.frames,
                vec![Frame {
                    seq: 1,
                    event: b"one"
                }],
                "flip at {at}"
            );
        }
    }

    #[test]
    fn a_seq_that_does_not_follow_ends_the_log() {
        // The tail of an older, longer log behind a reset that did not reach the disk.
        let mut bytes = log_of(&[(10, b"new")]);
        put_frame(&mut bytes, SALT, 4, b"old");
        let s = scan(&bytes).unwrap();
        assert_eq!(s.frames.len(), 1);
        assert_eq!(s.frames[0].seq, 10);
    }

    #[test]
    fn headers_cut_short_are_empty_and_foreign_files_are_corrupt() {
        assert!(scan(&MAGIC[..3]).unwrap().frames.is_empty());
        assert!(scan(&log_of(&[])[..HEADER - 1]).unwrap().frames.is_empty());
        // Frames written under another salt (an earlier open) are not this log's.
        let mut other = log_of(&[]);
        put_frame(&mut other, SALT + 1, 1, b"x");
        assert!(scan(&other).unwrap().frames.is_empty());
        assert!(scan(b"").unwrap().frames.is_empty());
        assert!(matches!(
            scan(b"not a log file"),
            Err(StoreError::Corrupt(_))
        ));
        let mut huge = log_of(&[]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 12]);
        assert!(scan(&huge).unwrap().frames.is_empty());
    }
}
