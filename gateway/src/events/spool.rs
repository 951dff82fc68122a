//! A bounded, append-only disk queue for usage events that could not reach Kafka.
//!
//! Records (`key`, `payload`) are appended to segment files (`<seq>.spool`, rolled at 64 MiB) as
//! `[u32 key_len][u32 payload_len][u32 crc32][key][payload]`, little endian. Writes are fsync'd in batches
//! (the caller decides how often — never on the request path). A `cursor` file (written atomically) marks how
//! far replay has been acknowledged; segments wholly before it are deleted. After a crash a torn last record is
//! ignored and a record whose checksum fails is skipped and counted — the rest replays in order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER: usize = 12;

/// A place in the spool: segment and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub seq: u64,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes)")]
    Full(u64),
    #[error("spool i/o: {0}")]
    Io(#[from] io::Error),
}

struct Segment {
    seq: u64,
    file: BufWriter<File>,
    len: u64,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    writer: Segment,
    cursor: Position,
    bytes: u64,
    dirty: bool,
    last_sync: Instant,
    /// Records skipped because their checksum failed (a disk problem; counted as dropped).
    pub corrupt: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016}.spool"))
}

fn segments(dir: &Path) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".spool"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, entry.metadata()?.len()));
    }
    out.sort_unstable();
    Ok(out)
}

impl Spool {
    /// Opens (or creates) the spool in `dir`. Appends always go to a fresh segment.
    ///
    /// # Errors
    /// When the directory or its files cannot be read or created.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let existing = segments(dir)?;
        let cursor = match fs::read_to_string(dir.join("cursor")) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(str::parse::<u64>);
                match (parts.next(), parts.next()) {
                    (Some(Ok(seq)), Some(Ok(offset))) => Position { seq, offset },
                    _ => Position { seq: 0, offset: 0 },
                }
            }
            Err(_) => Position {
                seq: existing.first().map_or(0, |s| s.0),
                offset: 0,
            },
        };
        let next_seq = existing.last().map_or(0, |s| s.0 + 1).max(cursor.seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, next_seq))?;
        let mut spool = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            writer: Segment {
                seq: next_seq,
                file: BufWriter::with_capacity(256 * 1024, file),
                len: 0,
            },
            cursor,
            bytes: 0,
            dirty: false,
            last_sync: Instant::now(),
            corrupt: 0,
        };
        spool.bytes = spool.measure()?;
        Ok(spool)
    }

    /// Bytes waiting to be replayed.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Appends a record (buffered; durable after the next [`Spool::sync`]).
    ///
    /// # Errors
    /// [`SpoolError::Full`] at the size cap, or an i/o error.
    pub fn append(&mut self, key: &[u8], payload: &[u8]) -> Result<(), SpoolError> {
        let size = (HEADER + key.len() + payload.len()) as u64;
        if self.bytes + size > self.max_bytes {
            return Err(SpoolError::Full(self.max_bytes));
        }
        if self.writer.len >= SEGMENT_BYTES {
            self.roll()?;
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(key);
        crc.update(payload);
        // The whole record in one write: a failure can never leave a lone header buffered to be flushed later.
        let mut record = Vec::with_capacity(HEADER + key.len() + payload.len());
        record.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_le_bytes());
        record.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        record.extend_from_slice(&crc.finalize().to_le_bytes());
        record.extend_from_slice(key);
        record.extend_from_slice(payload);
        if let Err(e) = self.writer.file.write_all(&record) {
            // Part of it may be in the file (a large record written through): never append after a possibly
            // torn record. A fresh segment starts; readers skip a torn tail in a finished segment.
            let _ = self.writer.file.flush();
            let _ = self.roll();
            return Err(e.into());
        }
        self.writer.len += size;
        self.bytes += size;
        self.dirty = true;
        Ok(())
    }

    /// Flushes and fsyncs appended records.
    ///
    /// # Errors
    /// When the disk refuses.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.writer.file.flush()?;
            self.writer.file.get_ref().sync_data()?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        Ok(())
    }

    /// [`Spool::sync`] if the last one is at least `every` old.
    ///
    /// # Errors
    /// When the disk refuses.
    pub fn sync_if_due(&mut self, every: Duration) -> io::Result<()> {
        if self.dirty && self.last_sync.elapsed() >= every {
            self.sync()?;
        }
        Ok(())
    }

    /// Up to `max` records from the acknowledged cursor on, and the position after the last one. Reading does
    /// not move the cursor: [`Spool::commit`] does, once Kafka has acknowledged them.
    ///
    /// # Errors
    /// When a segment cannot be read.
    pub fn read_batch(&mut self, max: usize) -> io::Result<(Vec<SpoolRecord>, Position)> {
        self.sync()?;
        let mut out = Vec::new();
        let mut pos = self.cursor;
        while out.len() < max && pos.seq <= self.writer.seq {
            let path = segment_path(&self.dir, pos.seq);
            let mut file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    pos = Position {
                        seq: pos.seq + 1,
                        offset: 0,
                    };
                    continue;
                }
                Err(e) => return Err(e),
            };
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(pos.offset))?;
            let mut reader = io::BufReader::new(file);
            while out.len() < max && pos.offset + HEADER as u64 <= len {
                let mut header = [0u8; HEADER];
                reader.read_exact(&mut header)?;
                let field = |i: usize| {
                    u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]])
                };
                let (key_len, payload_len, crc) = (field(0) as usize, field(4) as usize, field(8));
                let size = (HEADER + key_len + payload_len) as u64;
                if pos.offset + size > len {
                    break; // torn tail: nothing complete after it in this segment
                }
                let mut key = vec![0u8; key_len];
                let mut payload = vec![0u8; payload_len];
                reader.read_exact(&mut key)?;
                reader.read_exact(&mut payload)?;
                pos.offset += size;
                let mut check = crc32fast::Hasher::new();
                check.update(&key);
                check.update(&payload);
                if check.finalize() == crc {
                    out.push(SpoolRecord { key, payload });
                } else {
                    self.corrupt += 1;
                }
            }
            if out.len() >= max || pos.seq == self.writer.seq {
                break;
            }
            pos = Position {
                seq: pos.seq + 1,
                offset: 0,
            };
        }
        Ok((out, pos))
    }

    /// Marks everything before `to` as delivered: persists the cursor, deletes finished segments.
    ///
    /// # Errors
    /// When the cursor cannot be written.
    pub fn commit(&mut self, to: Position) -> io::Result<()> {
        if to <= self.cursor {
            return Ok(());
        }
        self.cursor = to;
        let tmp = self.dir.join("cursor.tmp");
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{} {}", to.seq, to.offset)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, self.dir.join("cursor"))?;
        for (seq, _) in segments(&self.dir)? {
            if seq < to.seq {
                fs::remove_file(segment_path(&self.dir, seq))?;
            }
        }
        self.bytes = self.measure()?;
        Ok(())
    }

    fn roll(&mut self) -> io::Result<()> {
        self.sync()?;
        let seq = self.writer.seq + 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(&self.dir, seq))?;
        self.writer = Segment {
            seq,
            file: BufWriter::with_capacity(256 * 1024, file),
            len: 0,
        };
        Ok(())
    }

    /// Bytes on disk from the cursor on (the writer's buffer included).
    fn measure(&self) -> io::Result<u64> {
        let mut total = 0;
        for (seq, len) in segments(&self.dir)? {
            let len = if seq == self.writer.seq {
                self.writer.len.max(len)
            } else {
                len
            };
            if seq > self.cursor.seq {
                total += len;
            } else if seq == self.cursor.seq {
                total += len.saturating_sub(self.cursor.offset);
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> (Vec<u8>, Vec<u8>) {
        (
            format!("tenant-{}", i % 3).into_bytes(),
            format!("{{\"n\":{i}}}").into_bytes(),
        )
    }

    #[test]
    fn replays_in_order_across_reopen_and_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(s.is_empty());
        for i in 0..10 {
            let (k, p) = rec(i);
            s.append(&k, &p).unwrap();
        }
        s.sync().unwrap();
        let (first, pos) = s.read_batch(4).unwrap();
        assert_eq!(
            first.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            (0..4).map(|i| rec(i).1).collect::<Vec<_>>()
        );
        // Not committed: a reopen replays from the start.
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let (again, _) = s.read_batch(4).unwrap();
        assert_eq!(again, first);
        s.commit(pos).unwrap();
        for i in 10..12 {
            let (k, p) = rec(i);
            s.append(&k, &p).unwrap();
        }
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let (rest, end) = s.read_batch(100).unwrap();
        assert_eq!(
            rest.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            (4..12).map(|i| rec(i).1).collect::<Vec<_>>()
        );
        assert_eq!(rest[0].key, b"tenant-1");
        s.commit(end).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.read_batch(10).unwrap().0.len(), 0);
    }

    #[test]
    fn refuses_past_its_cap_and_frees_space_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 120).unwrap();
        s.append(b"k", &[7; 40]).unwrap();
        s.append(b"k", &[7; 40]).unwrap();
        assert!(matches!(
            s.append(b"k", &[7; 40]),
            Err(SpoolError::Full(120))
        ));
        let (batch, pos) = s.read_batch(1).unwrap();
        assert_eq!(batch.len(), 1);
        s.commit(pos).unwrap();
        s.append(b"k", &[7; 40]).unwrap();
    }

    #[test]
    fn a_torn_tail_and_a_bad_checksum_do_not_stop_replay() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 0..3 {
                let (k, p) = rec(i);
                s.append(&k, &p).unwrap();
            }
            s.sync().unwrap();
        }
        let seg = segment_path(dir.path(), 0);
        let mut bytes = fs::read(&seg).unwrap();
        // Corrupt the payload of record 1, and tear a fourth record in half.
        let first = HEADER + rec(0).0.len() + rec(0).1.len();
        bytes[first + HEADER + 2] ^= 0xff;
        bytes.extend_from_slice(&[9, 0, 0, 0, 9, 0, 0]);
        fs::write(&seg, bytes).unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(b"k", b"after").unwrap();
        let (got, _) = s.read_batch(10).unwrap();
        let payloads: Vec<Vec<u8>> = got.into_iter().map(|r| r.payload).collect();
        assert_eq!(payloads, vec![rec(0).1, rec(2).1, b"after".to_vec()]);
        assert_eq!(s.corrupt, 1);
    }
}
