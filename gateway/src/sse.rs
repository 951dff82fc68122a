//! An incremental decoder of `text/event-stream` bodies: bytes in, complete `data` payloads out.
//!
//! Upstream reads split events anywhere (mid-line, mid-UTF-8, between `\r` and `\n`), so the decoder keeps
//! the unfinished tail and yields an event only once its terminating blank line has arrived.

use bytes::{Buf, Bytes, BytesMut};

/// Decodes SSE framing. Only `data:` fields matter to the OpenAI family; other fields and comments are
/// dropped.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// `data` lines of the event being read, joined by `\n`.
    data: Option<BytesMut>,
}

impl SseDecoder {
    /// Feeds a read and returns the payloads of every event it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = memchr::memchr(b'\n', &self.buf) {
            let mut line = self.buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(line.len() - 1);
            }
            self.line(line, &mut out);
        }
        out
    }

    /// Ends the body: an event left without its blank line is still delivered (servers that close right
    /// after the last `data:` line).
    pub fn finish(&mut self) -> Option<Bytes> {
        if !self.buf.is_empty() {
            let line = self.buf.split();
            let mut out = Vec::new();
            self.line(line, &mut out);
            if let Some(event) = out.pop() {
                return Some(event);
            }
        }
        self.data.take().map(BytesMut::freeze)
    }

    fn line(&mut self, mut line: BytesMut, out: &mut Vec<Bytes>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(data.freeze());
            }
            return;
        }
        if line.starts_with(b"data:") {
            line.advance(5);
            if line.first() == Some(&b' ') {
                line.advance(1);
            }
            match &mut self.data {
                Some(data) => {
                    data.extend_from_slice(b"\n");
                    data.extend_from_slice(&line);
                }
                None => self.data = Some(line),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parts: &[&[u8]]) -> Vec<String> {
        let mut d = SseDecoder::default();
        let mut out: Vec<String> = Vec::new();
        for p in parts {
            out.extend(
                d.push(p)
                    .iter()
                    .map(|b| String::from_utf8(b.to_vec()).unwrap()),
            );
        }
        out.extend(d.finish().map(|b| String::from_utf8(b.to_vec()).unwrap()));
        out
    }

    #[test]
    fn decodes_events_split_at_every_byte() {
        let body =
            "data: {\"a\":1}\n\n: comment\nevent: x\ndata: {\"b\":\"é\"}\r\n\r\ndata:[DONE]\n\n"
                .as_bytes();
        let whole = all(&[body]);
        assert_eq!(whole, ["{\"a\":1}", "{\"b\":\"é\"}", "[DONE]"]);
        for split in 0..body.len() {
            assert_eq!(
                all(&[&body[..split], &body[split..]]),
                whole,
                "split at {split}"
            );
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(all(&bytes), whole);
    }

    #[test]
    fn joins_multi_line_data_and_flushes_an_unterminated_last_event() {
        assert_eq!(all(&[b"data: a\ndata: b\n\ndata: tail"]), ["a\nb", "tail"]);
        assert_eq!(all(&[b"data: x\n"]), ["x"]);
        assert!(all(&[b": only a comment\n\n"]).is_empty());
    }
}
