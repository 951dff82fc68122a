//! Incremental decoder for AWS `application/vnd.amazon.eventstream` framing (Bedrock `ConverseStream` and
//! `InvokeModelWithResponseStream`).
//!
//! A message is `[total_len u32][headers_len u32][prelude_crc u32][headers][payload][message_crc u32]`, all
//! big-endian; `prelude_crc` is the CRC-32 (IEEE) of the first 8 bytes and `message_crc` of everything before
//! it. A header is `[name_len u8][name][type u8][value]`, types 0 true, 1 false, 2 byte, 3 int16, 4 int32,
//! 5 int64, 6 bytes (u16 length), 7 string (u16 length), 8 timestamp (int64 ms), 9 uuid (16 bytes).
//!
//! [`Decoder::push`] appends whatever the network delivered (frames may be split anywhere, or several may
//! arrive at once); [`Decoder::next_message`] / [`Decoder::messages`] yield each complete, verified message.
//! Both CRCs are checked, lengths are bounded (a message may not exceed [`MAX_MESSAGE_LEN`], its headers
//! [`MAX_HEADERS_LEN`]) before anything is buffered for it, and a header name may appear once. Framing errors
//! are fatal: after one, the decoder returns it again on every call, since the stream cannot be resynchronised.
//!
//! Errors are this module's own [`EventStreamError`] (a small `thiserror` enum): the relay decides how a broken
//! stream becomes a [`GatewayError`](crate::error::GatewayError).

use std::fmt;

use bytes::{Buf, Bytes, BytesMut};

/// Largest message accepted (Bedrock chunks are a few KiB; botocore allows a 24 MiB payload).
pub const MAX_MESSAGE_LEN: u32 = 16 * 1024 * 1024;
/// Largest header block accepted (botocore's limit).
pub const MAX_HEADERS_LEN: u32 = 128 * 1024;
const PRELUDE_LEN: usize = 12;
const CRC_LEN: usize = 4;
/// Prelude and message CRC: a message with no headers and no payload.
const MIN_MESSAGE_LEN: u32 = (PRELUDE_LEN + CRC_LEN) as u32;

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    #[error("event-stream prelude checksum mismatch (frame {expected:#010x}, computed {computed:#010x})")]
    PreludeChecksum { expected: u32, computed: u32 },
    #[error("event-stream message checksum mismatch (frame {expected:#010x}, computed {computed:#010x})")]
    MessageChecksum { expected: u32, computed: u32 },
    #[error("event-stream message length {length} is below the 16-byte minimum")]
    MessageTooShort { length: u32 },
    #[error("event-stream message length {length} exceeds the limit of {limit} bytes")]
    MessageTooLong { length: u32, limit: u32 },
    #[error("event-stream headers length {headers_length} does not fit a message of {total_length} bytes")]
    InvalidHeadersLength {
        headers_length: u32,
        total_length: u32,
    },
    #[error("event-stream header block ends inside a header")]
    TruncatedHeader,
    #[error("event-stream header value type {0} is unknown")]
    UnknownHeaderType(u8),
    #[error("event-stream {0} is not UTF-8")]
    InvalidUtf8(&'static str),
    #[error("event-stream header {0:?} appears twice in one message")]
    DuplicateHeader(String),
    #[error("event stream ended inside a message ({buffered} bytes left over)")]
    Truncated { buffered: usize },
}

/// A typed header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    ByteArray(Bytes),
    String(String),
    /// Milliseconds since the Unix epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

impl HeaderValue {
    /// The value of a string header.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

/// One decoded, checksum-verified message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    headers: Vec<Header>,
    payload: Bytes,
}

impl Message {
    #[must_use]
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    #[must_use]
    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    fn string_header(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }

    /// `:message-type`: `event`, `exception` or `error`.
    #[must_use]
    pub fn message_type(&self) -> Option<&str> {
        self.string_header(":message-type")
    }

    /// `:event-type` of an event, e.g. `contentBlockDelta`, `metadata`, `chunk`.
    #[must_use]
    pub fn event_type(&self) -> Option<&str> {
        self.string_header(":event-type")
    }

    /// `:exception-type` of an exception, e.g. `throttlingException`.
    #[must_use]
    pub fn exception_type(&self) -> Option<&str> {
        self.string_header(":exception-type")
    }

    /// `:content-type` of the payload, e.g. `application/json`.
    #[must_use]
    pub fn content_type(&self) -> Option<&str> {
        self.string_header(":content-type")
    }

    /// `:error-code` of an `error` message.
    #[must_use]
    pub fn error_code(&self) -> Option<&str> {
        self.string_header(":error-code")
    }

    /// `:error-message` of an `error` message.
    #[must_use]
    pub fn error_message(&self) -> Option<&str> {
        self.string_header(":error-message")
    }

    #[must_use]
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

/// Buffers a byte stream and cuts it into messages; see the module docs.
pub struct Decoder {
    buffer: BytesMut,
    max_message_len: u32,
    failed: Option<EventStreamError>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buffer.len())
            .field("max_message_len", &self.max_message_len)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_message_len(MAX_MESSAGE_LEN)
    }

    /// A decoder that rejects messages longer than `limit` bytes.
    #[must_use]
    pub fn with_max_message_len(limit: u32) -> Self {
        Self {
            buffer: BytesMut::new(),
            max_message_len: limit,
            failed: None,
        }
    }

    /// Appends bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Bytes held for a message not yet complete.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next complete message, `None` until more bytes arrive.
    ///
    /// # Errors
    /// The first framing error, on this call and every later one.
    pub fn next_message(&mut self) -> Result<Option<Message>, EventStreamError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.decode_next()
            .inspect_err(|error| self.failed = Some(error.clone()))
    }

    /// Every message complete so far; stops after an error.
    pub fn messages(&mut self) -> impl Iterator<Item = Result<Message, EventStreamError>> + '_ {
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let next = self.next_message().transpose();
            done = !matches!(next, Some(Ok(_)));
            next
        })
    }

    /// Call at the end of the stream: bytes left over mean it stopped inside a message.
    ///
    /// # Errors
    /// [`EventStreamError::Truncated`], or the framing error the stream already hit.
    pub fn finish(&self) -> Result<(), EventStreamError> {
        match &self.failed {
            Some(error) => Err(error.clone()),
            None if self.buffer.is_empty() => Ok(()),
            None => Err(EventStreamError::Truncated {
                buffered: self.buffer.len(),
            }),
        }
    }

    fn decode_next(&mut self) -> Result<Option<Message>, EventStreamError> {
        let Some(prelude) = self.buffer.get(..PRELUDE_LEN) else {
            return Ok(None);
        };
        let prelude = Prelude::parse(prelude, self.max_message_len)?;
        let total = prelude.total_length as usize;
        if self.buffer.len() < total {
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        let frame = self.buffer.split_to(total).freeze();
        decode_frame(&frame, &prelude).map(Some)
    }
}

/// The validated first 12 bytes of a message.
struct Prelude {
    total_length: u32,
    headers_length: u32,
}

impl Prelude {
    fn parse(bytes: &[u8], max_message_len: u32) -> Result<Self, EventStreamError> {
        let mut cursor = bytes;
        let total_length = cursor.get_u32();
        let headers_length = cursor.get_u32();
        let expected = cursor.get_u32();
        let computed = crc32fast::hash(&bytes[..8]);
        if expected != computed {
            return Err(EventStreamError::PreludeChecksum { expected, computed });
        }
        if total_length < MIN_MESSAGE_LEN {
            return Err(EventStreamError::MessageTooShort {
                length: total_length,
            });
        }
        if total_length > max_message_len {
            return Err(EventStreamError::MessageTooLong {
                length: total_length,
                limit: max_message_len,
            });
        }
        if headers_length > MAX_HEADERS_LEN || headers_length > total_length - MIN_MESSAGE_LEN {
            return Err(EventStreamError::InvalidHeadersLength {
                headers_length,
                total_length,
            });
        }
        Ok(Self {
            total_length,
            headers_length,
        })
    }
}

/// Checks the message CRC of a whole frame, then splits it into headers and payload.
fn decode_frame(frame: &Bytes, prelude: &Prelude) -> Result<Message, EventStreamError> {
    let crc_start = frame.len() - CRC_LEN;
    let mut crc_bytes = &frame[crc_start..];
    let expected = crc_bytes.get_u32();
    let computed = crc32fast::hash(&frame[..crc_start]);
    if expected != computed {
        return Err(EventStreamError::MessageChecksum { expected, computed });
    }
    let headers_end = PRELUDE_LEN + prelude.headers_length as usize;
    Ok(Message {
        headers: parse_headers(frame.slice(PRELUDE_LEN..headers_end))?,
        payload: frame.slice(headers_end..crc_start),
    })
}

/// Parses a header block (the bytes between prelude and payload).
fn parse_headers(mut block: Bytes) -> Result<Vec<Header>, EventStreamError> {
    let mut headers: Vec<Header> = Vec::new();
    while block.has_remaining() {
        let name_len = usize::from(take(&mut block, 1)?.get_u8());
        let name = utf8(take(&mut block, name_len)?, "header name")?;
        let value = parse_value(&mut block)?;
        if headers.iter().any(|h| h.name == name) {
            return Err(EventStreamError::DuplicateHeader(name));
        }
        headers.push(Header { name, value });
    }
    Ok(headers)
}

fn parse_value(block: &mut Bytes) -> Result<HeaderValue, EventStreamError> {
    let value_type = take(block, 1)?.get_u8();
    Ok(match value_type {
        0 => HeaderValue::Bool(true),
        1 => HeaderValue::Bool(false),
        2 => HeaderValue::Byte(take(block, 1)?.get_i8()),
        3 => HeaderValue::Int16(take(block, 2)?.get_i16()),
        4 => HeaderValue::Int32(take(block, 4)?.get_i32()),
        5 => HeaderValue::Int64(take(block, 8)?.get_i64()),
        6 => {
            let len = usize::from(take(block, 2)?.get_u16());
            HeaderValue::ByteArray(take(block, len)?)
        }
        7 => {
            let len = usize::from(take(block, 2)?.get_u16());
            HeaderValue::String(utf8(take(block, len)?, "string header value")?)
        }
        8 => HeaderValue::Timestamp(take(block, 8)?.get_i64()),
        9 => {
            let mut uuid = [0u8; 16];
            take(block, 16)?.copy_to_slice(&mut uuid);
            HeaderValue::Uuid(uuid)
        }
        other => return Err(EventStreamError::UnknownHeaderType(other)),
    })
}

/// The next `len` bytes of the header block, or [`EventStreamError::TruncatedHeader`].
fn take(block: &mut Bytes, len: usize) -> Result<Bytes, EventStreamError> {
    if block.remaining() < len {
        return Err(EventStreamError::TruncatedHeader);
    }
    Ok(block.split_to(len))
}

fn utf8(bytes: Bytes, what: &'static str) -> Result<String, EventStreamError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EventStreamError::InvalidUtf8(what))
}

#[cfg(test)]
mod tests;
