//! The decoder against every vector in `tests/fixtures/bedrock-eventstream`, whole, byte by byte and in random
//! splits, plus ConverseStream streams framed from vercel/ai's recorded event payloads.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/bedrock-eventstream")
}

fn read(path: &str) -> Vec<u8> {
    let path = fixtures().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json_fixture(path: &str) -> Value {
    serde_json::from_slice(&read(path)).unwrap()
}

/// Feeds `chunks` in order and collects messages until the end (then `finish`) or the first error.
fn decode_chunks<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<Message>, EventStreamError> {
    let mut decoder = Decoder::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        decoder.push(chunk);
        for message in decoder.messages() {
            messages.push(message?);
        }
    }
    decoder.finish()?;
    Ok(messages)
}

fn decode_whole(bytes: &[u8]) -> Result<Vec<Message>, EventStreamError> {
    decode_chunks([bytes])
}

fn decode_byte_by_byte(bytes: &[u8]) -> Result<Vec<Message>, EventStreamError> {
    decode_chunks(bytes.chunks(1))
}

/// Cuts `bytes` at random points (seeded), including empty reads.
fn random_splits(bytes: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut cuts: Vec<usize> = (0..rng.random_range(0..=bytes.len().min(40)))
        .map(|_| rng.random_range(0..=bytes.len()))
        .collect();
    cuts.extend([0, bytes.len()]);
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// Same result whole, byte by byte and in 20 random splittings.
fn decode_every_way(bytes: &[u8]) -> Result<Vec<Message>, EventStreamError> {
    let whole = decode_whole(bytes);
    assert_eq!(decode_byte_by_byte(bytes), whole, "byte by byte");
    for seed in 0..20 {
        assert_eq!(
            decode_chunks(random_splits(bytes, seed)),
            whole,
            "split seed {seed}"
        );
    }
    whole
}

/// `(type code, JSON value)` in the form botocore's manifest (`cases.json`) records headers.
fn manifest_form(value: &HeaderValue) -> (u64, Value) {
    match value {
        HeaderValue::Bool(true) => (0, json!(true)),
        HeaderValue::Bool(false) => (1, json!(false)),
        HeaderValue::Byte(v) => (2, json!(v)),
        HeaderValue::Int16(v) => (3, json!(v)),
        HeaderValue::Int32(v) => (4, json!(v)),
        HeaderValue::Int64(v) => (5, json!(v)),
        HeaderValue::ByteArray(v) => (6, json!({"base64": STANDARD.encode(v)})),
        HeaderValue::String(v) => (7, json!(v)),
        HeaderValue::Timestamp(v) => (8, json!(v)),
        HeaderValue::Uuid(v) => (9, json!({"hex": hex::encode(v)})),
    }
}

fn assert_headers_match_manifest(headers: &[Header], expected: &Value, what: &str) {
    let expected = expected.as_array().unwrap();
    assert_eq!(headers.len(), expected.len(), "{what}");
    for (header, want) in headers.iter().zip(expected) {
        let (code, value) = manifest_form(&header.value);
        assert_eq!(header.name, want["name"], "{what}");
        assert_eq!(code, want["type"], "{what}: {}", header.name);
        assert_eq!(value, want["value"], "{what}: {}", header.name);
    }
}

#[test]
fn botocore_positive_vectors() {
    let manifest = json_fixture("botocore/cases.json");
    let cases = manifest["positive"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let decoded = &case["decoded"];
        let bytes = read(&format!("botocore/{file}"));
        let messages = decode_every_way(&bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(messages.len(), 1, "{file}");
        let message = &messages[0];
        assert_headers_match_manifest(message.headers(), &decoded["headers"], file);
        assert_eq!(
            message.payload().as_ref(),
            decoded["payload_utf8"].as_str().unwrap().as_bytes(),
            "{file}"
        );
    }
}

#[test]
fn botocore_error_message_exposes_code_and_message() {
    let messages = decode_whole(&read("botocore/positive/error_event_message.bin")).unwrap();
    assert_eq!(messages[0].message_type(), Some("error"));
    assert_eq!(messages[0].error_code(), Some("code"));
    assert_eq!(messages[0].error_message(), Some("message"));
}

/// The error variant a botocore manifest's `expected_error` text names.
fn botocore_expected(text: &str) -> fn(&EventStreamError) -> bool {
    if text.starts_with("ChecksumMismatch (prelude") {
        |e| matches!(e, EventStreamError::PreludeChecksum { .. })
    } else if text.starts_with("ChecksumMismatch (message") {
        |e| matches!(e, EventStreamError::MessageChecksum { .. })
    } else if text.starts_with("DuplicateHeader") {
        |e| matches!(e, EventStreamError::DuplicateHeader(name) if name == "test")
    } else if text.starts_with("InvalidHeadersLength") {
        |e| matches!(e, EventStreamError::InvalidHeadersLength { .. })
    } else {
        panic!("unknown expected error {text}")
    }
}

#[test]
fn botocore_negative_vectors() {
    let manifest = json_fixture("botocore/cases.json");
    let cases = manifest["negative"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let file = case["file"].as_str().unwrap();
        let expected = case["expected_error"].as_str().unwrap();
        let error = decode_every_way(&read(&format!("botocore/{file}"))).expect_err(file);
        assert!(
            botocore_expected(expected)(&error),
            "{file}: {error} is not {expected}"
        );
    }
}

#[test]
fn botocore_split_frames_and_bare_header_block() {
    let manifest = json_fixture("botocore/cases.json");
    let other = manifest["other"].as_array().unwrap();
    // The splits botocore's own test uses.
    for (file, cuts) in [
        ("other/event_id_int32_header_payload.bin", vec![23]),
        ("other/initial_response_event.bin", vec![28, 79]),
    ] {
        let bytes = read(&format!("botocore/{file}"));
        let case = other.iter().find(|c| c["file"] == file).unwrap();
        let mut bounds = vec![0];
        bounds.extend(cuts);
        bounds.push(bytes.len());
        let chunks: Vec<&[u8]> = bounds.windows(2).map(|w| &bytes[w[0]..w[1]]).collect();
        let messages = decode_chunks(chunks).unwrap();
        assert_eq!(messages, decode_every_way(&bytes).unwrap(), "{file}");
        assert_headers_match_manifest(messages[0].headers(), &case["decoded"]["headers"], file);
        assert_eq!(
            messages[0].payload().as_ref(),
            case["decoded"]["payload_utf8"].as_str().unwrap().as_bytes()
        );
    }
    let initial = decode_whole(&read("botocore/other/initial_response_event.bin")).unwrap();
    assert_eq!(initial[0].event_type(), Some("initial-response"));
    assert_eq!(initial[0].content_type(), Some("text/json"));

    let block = read("botocore/other/all_header_types.headers_block.bin");
    let case = other
        .iter()
        .find(|c| c["file"] == "other/all_header_types.headers_block.bin")
        .unwrap();
    let headers = parse_headers(Bytes::from(block)).unwrap();
    assert_headers_match_manifest(&headers, &case["headers"], "headers block");
}

/// A prelude with a valid CRC, for lengths no fixture can hold.
fn prelude(total_length: u32, headers_length: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend(total_length.to_be_bytes());
    bytes.extend(headers_length.to_be_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend(crc.to_be_bytes());
    bytes
}

#[test]
fn absurd_lengths_are_refused_before_buffering() {
    // botocore's INVALID_PAYLOAD_LENGTH (24 MiB + 1 payload, not stored): refused from its prelude alone.
    let mut decoder = Decoder::new();
    decoder.push(&prelude(0x0180_0021, 0));
    assert_eq!(
        decoder.next_message(),
        Err(EventStreamError::MessageTooLong {
            length: 0x0180_0021,
            limit: MAX_MESSAGE_LEN
        })
    );
    assert!(decoder.buffered() < 64);
    // The error sticks.
    decoder.push(&[0; 16]);
    assert!(decoder.next_message().is_err());

    let mut decoder = Decoder::with_max_message_len(1024);
    decoder.push(&prelude(1025, 0));
    assert!(matches!(
        decoder.next_message(),
        Err(EventStreamError::MessageTooLong { length: 1025, .. })
    ));

    let mut decoder = Decoder::new();
    decoder.push(&prelude(15, 0));
    assert_eq!(
        decoder.next_message(),
        Err(EventStreamError::MessageTooShort { length: 15 })
    );

    let mut decoder = Decoder::new();
    decoder.push(&prelude(MAX_MESSAGE_LEN, MAX_HEADERS_LEN + 1));
    assert!(matches!(
        decoder.next_message(),
        Err(EventStreamError::InvalidHeadersLength { .. })
    ));
}

#[test]
fn truncated_streams_are_reported_at_the_end() {
    let bytes = read("botocore/positive/payload_one_str_header.bin");
    for cut in [1, 11, 12, 30, bytes.len() - 1] {
        let error = decode_whole(&bytes[..cut]).unwrap_err();
        assert_eq!(
            error,
            EventStreamError::Truncated { buffered: cut },
            "cut at {cut}"
        );
    }
}

#[test]
fn smithy_rs_valid_vectors() {
    let all = decode_every_way(&read(
        "smithy-rs/test_data/valid_with_all_headers_and_payload",
    ))
    .unwrap();
    let uuid: [u8; 16] = hex::decode("b79bc914de214e13b8b2bc47e85b7f0b")
        .unwrap()
        .try_into()
        .unwrap();
    let expected = vec![
        ("true", HeaderValue::Bool(true)),
        ("false", HeaderValue::Bool(false)),
        ("byte", HeaderValue::Byte(50)),
        ("short", HeaderValue::Int16(20_000)),
        ("int", HeaderValue::Int32(500_000)),
        ("long", HeaderValue::Int64(50_000_000_000)),
        (
            "bytes",
            HeaderValue::ByteArray(Bytes::from_static(b"some bytes")),
        ),
        ("str", HeaderValue::String("some str".into())),
        ("time", HeaderValue::Timestamp(5_000_000 * 1000)),
        ("uuid", HeaderValue::Uuid(uuid)),
    ];
    let got: Vec<(&str, HeaderValue)> = all[0]
        .headers()
        .iter()
        .map(|h| (h.name.as_str(), h.value.clone()))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(all[0].payload().as_ref(), b"some payload");

    let empty = decode_every_way(&read("smithy-rs/test_data/valid_empty_payload")).unwrap();
    assert_eq!(
        empty[0].header("some-header"),
        Some(&HeaderValue::Int16(500))
    );
    assert!(empty[0].payload().is_empty());

    let no_headers = decode_every_way(&read("smithy-rs/test_data/valid_no_headers")).unwrap();
    assert!(no_headers[0].headers().is_empty());
    assert_eq!(no_headers[0].payload().as_ref(), b"another test payload");
}

/// The frame with its message CRC recomputed, to reach the header error behind the bad checksum.
fn with_valid_message_crc(mut frame: Vec<u8>) -> Vec<u8> {
    let total = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
    frame.truncate(total);
    let crc = crc32fast::hash(&frame[..total - 4]);
    frame[total - 4..].copy_from_slice(&crc.to_be_bytes());
    frame
}

#[test]
fn smithy_rs_invalid_vectors() {
    type Check = fn(&EventStreamError) -> bool;
    // (file, error as stored, error once the message CRC is made valid). smithy-rs parses headers before
    // checking the message CRC; this decoder checks the CRC first, hence two expectations per file.
    let cases: [(&str, Check, Check); 8] = [
        (
            "invalid_prelude_checksum",
            |e| {
                matches!(
                    e,
                    EventStreamError::PreludeChecksum {
                        computed: 0x8BB4_95FB,
                        expected: 0xDEAD_BEEF
                    }
                )
            },
            |e| matches!(e, EventStreamError::PreludeChecksum { .. }),
        ),
        (
            "invalid_message_checksum",
            |e| {
                matches!(
                    e,
                    EventStreamError::MessageChecksum {
                        computed: 0x01A0_5860,
                        expected: 0xDEAD_BEEF
                    }
                )
            },
            |_| false, // repaired, it is valid: checked below
        ),
        (
            "invalid_headers_length",
            |e| {
                matches!(
                    e,
                    EventStreamError::InvalidHeadersLength {
                        headers_length: 77,
                        total_length: 89
                    }
                )
            },
            |e| matches!(e, EventStreamError::InvalidHeadersLength { .. }),
        ),
        (
            "invalid_header_string_value_length",
            |e| matches!(e, EventStreamError::MessageChecksum { .. }),
            |e| matches!(e, EventStreamError::TruncatedHeader),
        ),
        (
            "invalid_header_string_length_cut_off",
            |e| matches!(e, EventStreamError::MessageChecksum { .. }),
            |e| matches!(e, EventStreamError::TruncatedHeader),
        ),
        (
            "invalid_header_value_type",
            |e| matches!(e, EventStreamError::MessageChecksum { .. }),
            |e| matches!(e, EventStreamError::UnknownHeaderType(0x60)),
        ),
        (
            "invalid_header_name_length",
            |e| matches!(e, EventStreamError::MessageChecksum { .. }),
            |e| matches!(e, EventStreamError::TruncatedHeader),
        ),
        // smithy-rs reports InvalidUtf8String here; the second name's length (0x66) runs past the 77-byte
        // header block, which this decoder checks before decoding the name.
        (
            "invalid_header_name_length_too_long",
            |e| matches!(e, EventStreamError::MessageChecksum { .. }),
            |e| matches!(e, EventStreamError::TruncatedHeader),
        ),
    ];
    for (file, as_stored, repaired) in cases {
        let bytes = read(&format!("smithy-rs/test_data/{file}"));
        let error = decode_every_way(&bytes).expect_err(file);
        assert!(as_stored(&error), "{file}: {error}");
        let repaired_bytes = with_valid_message_crc(bytes);
        match decode_every_way(&repaired_bytes) {
            Err(error) => assert!(repaired(&error), "{file} repaired: {error}"),
            Ok(messages) => {
                assert_eq!(file, "invalid_message_checksum");
                assert_eq!(messages[0].payload().as_ref(), b"some payload");
            }
        }
    }
}

#[test]
fn aws_sdk_php_bedrock_chunk_frames() {
    let messages =
        decode_every_way(&read("aws-sdk-php/input/bedrock_invoke_model_event.bin")).unwrap();
    let expected = json_fixture("aws-sdk-php/output/bedrock_invoke_model_event.json");
    let expected = expected.as_array().unwrap();
    assert_eq!(messages.len(), expected.len());
    for (message, want) in messages.iter().zip(expected) {
        assert_eq!(message.message_type(), Some("event"));
        assert_eq!(message.event_type(), Some("chunk"));
        assert_eq!(message.content_type(), Some("application/json"));
        let payload: Value = serde_json::from_slice(message.payload()).unwrap();
        let inner = STANDARD.decode(payload["bytes"].as_str().unwrap()).unwrap();
        assert_eq!(inner, want["chunk"]["bytes"].as_str().unwrap().as_bytes());
    }
    // The base64 text stored upstream is the same frames.
    let text = String::from_utf8(read("aws-sdk-php/input/bedrock_invoke_model_event")).unwrap();
    let from_text = STANDARD.decode(text.trim()).unwrap();
    assert_eq!(decode_whole(&from_text).unwrap(), messages);
}

#[test]
fn aws_sdk_php_other_frames() {
    let decode =
        |name: &str| decode_every_way(&read(&format!("aws-sdk-php/input/{name}.bin"))).unwrap();

    let error = decode("error_event");
    assert_eq!(error[0].message_type(), Some("error"));
    assert_eq!(error[0].error_code(), Some("FooError"));
    assert_eq!(error[0].error_message(), Some("Event Error"));

    assert_eq!(
        decode("unknown_message_type")[0].message_type(),
        Some("Test")
    );
    assert_eq!(decode("end_event")[0].event_type(), Some("End"));
    assert!(decode("end_event")[0].payload().is_empty());

    let stats = decode("stats_event");
    assert_eq!(stats[0].event_type(), Some("Stats"));
    assert!(stats[0].payload().starts_with(b"<Stats"));

    let records = decode("records_event");
    let expected = json_fixture("aws-sdk-php/output/records_event.json");
    assert_eq!(
        records[0].payload().as_ref(),
        expected["Records"]["Payload"].as_str().unwrap().as_bytes()
    );

    // Typed headers, as the PHP SDK's expected output lists them.
    let headers = decode("headers_event");
    let expected = json_fixture("aws-sdk-php/output/headers_event.json");
    let want = &expected["FooBar"];
    let message = &headers[0];
    assert_eq!(message.event_type(), Some("FooBar"));
    assert_eq!(
        message.header("HeaderInt"),
        Some(&HeaderValue::Int32(
            want["HeaderInt"].as_i64().unwrap() as i32
        ))
    );
    assert_eq!(
        message.header("HeaderLong"),
        Some(&HeaderValue::Int64(want["HeaderLong"].as_i64().unwrap()))
    );
    assert_eq!(
        message.header("HeaderBlob"),
        Some(&HeaderValue::ByteArray(Bytes::from(
            want["HeaderBlob"].as_str().unwrap().to_owned()
        )))
    );
    assert_eq!(
        message.header("HeaderBoolean"),
        Some(&HeaderValue::Bool(want["HeaderBoolean"].as_bool().unwrap()))
    );
    assert_eq!(
        message.header("HeaderTimestamp"),
        Some(&HeaderValue::Timestamp(
            want["HeaderTimestamp"].as_i64().unwrap()
        ))
    );
    assert_eq!(
        message.header("HeaderByte"),
        Some(&HeaderValue::Byte(
            want["HeaderByte"].as_i64().unwrap() as i8
        ))
    );
    assert_eq!(
        message.header("HeaderString").and_then(HeaderValue::as_str),
        want["HeaderString"].as_str()
    );

    let unknown = decode("unknown_event_type");
    assert_eq!(unknown[0].event_type(), None);
    assert_eq!(unknown[0].message_type(), None);

    let service = decode("headers_payload_event");
    assert_eq!(service[0].event_type(), Some("Service"));

    let lambda = decode("lambda_invoke_event");
    assert_eq!(lambda.len(), 2);
}

#[test]
fn vercel_ai_bedrock_model_stream_error_exception() {
    let bytes = read("vercel-ai/model-stream-error-exception.eventstream.bin");
    let messages = decode_every_way(&bytes).unwrap();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(message.message_type(), Some("exception"));
    assert_eq!(message.exception_type(), Some("modelStreamErrorException"));
    assert_eq!(message.content_type(), Some("application/json"));
    let payload: Value = serde_json::from_slice(message.payload()).unwrap();
    assert_eq!(
        payload,
        json!({"message": "Model Stream Error", "originalStatusCode": 500, "originalMessage": "The model stream failed."})
    );
    let text = String::from_utf8(read(
        "vercel-ai/model-stream-error-exception.eventstream.base64.txt",
    ))
    .unwrap();
    assert_eq!(STANDARD.decode(text.trim()).unwrap(), bytes);
}

/// The response body bytes of a smithy-rs recorded exchange, in the reads that were recorded.
fn recorded_response_reads(path: &str) -> Vec<Vec<u8>> {
    let recorded = json_fixture(path);
    let events = recorded
        .as_array()
        .or_else(|| recorded["events"].as_array())
        .unwrap();
    events
        .iter()
        .filter_map(|e| e["action"]["Data"].as_object())
        .filter(|data| data["direction"] == "Response")
        .map(
            |data| match (&data["data"]["Base64"], &data["data"]["Utf8"]) {
                (Value::String(b64), _) => STANDARD.decode(b64).unwrap(),
                (_, Value::String(text)) => text.as_bytes().to_vec(),
                other => panic!("{path}: unexpected data {other:?}"),
            },
        )
        .collect()
}

#[test]
fn recorded_aws_streams_in_any_split() {
    // (recording, expected (message type, event or exception type) of every message)
    let recordings: [(&str, Vec<(&str, &str)>); 4] = [
        (
            "smithy-rs/recorded/s3-select-object-content.json",
            vec![("event", "Records"), ("event", "Stats"), ("event", "End")],
        ),
        (
            "smithy-rs/recorded/transcribestreaming-error.json",
            vec![("exception", "BadRequestException")],
        ),
        (
            "smithy-rs/recorded/transcribestreaming-success.json",
            vec![("event", "TranscriptEvent"); 35],
        ),
        (
            "smithy-rs/recorded/cloudwatchlogs-start-live-tail-success.json",
            vec![],
        ),
    ];
    for (path, expected) in recordings {
        let reads = recorded_response_reads(path);
        let body: Vec<u8> = reads.concat();
        let as_recorded = decode_chunks(reads.iter().map(Vec::as_slice)).unwrap();
        assert_eq!(decode_every_way(&body).unwrap(), as_recorded, "{path}");
        let kinds: Vec<(&str, &str)> = as_recorded
            .iter()
            .map(|m| {
                let kind = m.event_type().or(m.exception_type()).unwrap_or_default();
                (m.message_type().unwrap_or_default(), kind)
            })
            .collect();
        if path.contains("cloudwatchlogs") {
            assert_eq!(
                kinds.first(),
                Some(&("event", "initial-response")),
                "{path}"
            );
            assert!(
                kinds[1..].iter().all(|k| *k == ("event", "sessionUpdate")),
                "{path}"
            );
            assert!(kinds.len() >= 2);
        } else {
            assert_eq!(kinds, expected, "{path}");
        }
    }
}

/// Frames one message with string headers (a test-side encoder, for streams no fixture holds).
fn encode(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in headers {
        block.push(u8::try_from(name.len()).unwrap());
        block.extend(name.as_bytes());
        block.push(7);
        block.extend(u16::try_from(value.len()).unwrap().to_be_bytes());
        block.extend(value.as_bytes());
    }
    let total = u32::try_from(16 + block.len() + payload.len()).unwrap();
    let mut frame = prelude(total, u32::try_from(block.len()).unwrap());
    frame.extend(block);
    frame.extend(payload);
    let crc = crc32fast::hash(&frame);
    frame.extend(crc.to_be_bytes());
    frame
}

#[test]
fn converse_streams_from_recorded_event_payloads() {
    for file in [
        "bedrock-text.chunks.txt",
        "bedrock-tool-call.1.chunks.txt",
        "bedrock-reasoning.chunks.txt",
    ] {
        let text =
            String::from_utf8(read(&format!("vercel-ai/converse-stream-chunks/{file}"))).unwrap();
        // Each line is `{"<eventType>": <payload>}`, as the SDK yields ConverseStream events.
        let events: Vec<(String, Value)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                let (name, payload) = value.as_object().unwrap().iter().next().unwrap();
                (name.clone(), payload.clone())
            })
            .collect();
        let stream: Vec<u8> = events
            .iter()
            .flat_map(|(name, payload)| {
                encode(
                    &[
                        (":event-type", name),
                        (":content-type", "application/json"),
                        (":message-type", "event"),
                    ],
                    payload.to_string().as_bytes(),
                )
            })
            .collect();
        let messages = decode_every_way(&stream).unwrap();
        assert_eq!(messages.len(), events.len(), "{file}");
        for (message, (name, payload)) in messages.iter().zip(&events) {
            assert_eq!(message.event_type(), Some(name.as_str()), "{file}");
            assert_eq!(message.message_type(), Some("event"));
            let decoded: Value = serde_json::from_slice(message.payload()).unwrap();
            assert_eq!(&decoded, payload, "{file}");
        }
        assert!(
            messages.iter().any(|m| m.event_type() == Some("metadata")),
            "{file}: usage event"
        );
    }
}

#[test]
fn several_messages_in_one_read_and_an_error_after_good_ones() {
    let good = read("botocore/positive/payload_one_str_header.bin");
    let bad = read("botocore/negative/corrupted_payload.bin");
    let mut stream = good.repeat(3);
    stream.extend(&bad);
    stream.extend(&good);
    let mut decoder = Decoder::new();
    decoder.push(&stream);
    let outcomes: Vec<_> = decoder.messages().collect();
    assert_eq!(outcomes.len(), 4);
    assert!(outcomes[..3].iter().all(Result::is_ok));
    assert!(matches!(
        outcomes[3],
        Err(EventStreamError::MessageChecksum { .. })
    ));
    assert!(
        decoder.next_message().is_err(),
        "no resynchronisation after an error"
    );
    assert!(decoder.finish().is_err());
}

/// One frame around a raw header block.
fn frame_with_header_block(block: &[u8]) -> Vec<u8> {
    let total = u32::try_from(16 + block.len()).unwrap();
    let mut frame = prelude(total, u32::try_from(block.len()).unwrap());
    frame.extend(block);
    let crc = crc32fast::hash(&frame);
    frame.extend(crc.to_be_bytes());
    frame
}

#[test]
fn names_and_string_values_must_be_utf8() {
    let bad_name = frame_with_header_block(&[1, 0xFF, 7, 0, 1, b'a']);
    assert_eq!(
        decode_every_way(&bad_name),
        Err(EventStreamError::InvalidUtf8("header name"))
    );
    let bad_value = frame_with_header_block(&[1, b'a', 7, 0, 2, 0xC3, 0x28]);
    assert_eq!(
        decode_every_way(&bad_value),
        Err(EventStreamError::InvalidUtf8("string header value"))
    );
    let good = frame_with_header_block(&[1, b'a', 7, 0, 2, 0xC3, 0xA9]);
    assert_eq!(
        decode_whole(&good).unwrap()[0].header("a"),
        Some(&HeaderValue::String("\u{e9}".into()))
    );
}
