//! # tollgate-tests — end-to-end tests and the mock upstream they run against
//!
//! ## Layout
//! - [`mock_upstream`] — a fault-injecting upstream that speaks the OpenAI wire format and the stream-usage
//!   dialects of Moonshot, Huawei ModelArts and Zhipu, the Anthropic Messages API, and the native Tencent
//!   Hunyuan (TC3-verified), Baidu Qianfan v1 (with its token endpoint) and DashScope APIs. Used in-process by the Rust tests, and as the
//!   `tollgate-mock-upstream` binary by the Python SDK tests and the benchmarks.
//! - `tests/*.rs` — the gateway driven over loopback against mock upstreams.
//! - `python/` — the official `openai` SDK against a running gateway.
//! - `fixtures/` — recorded provider responses (each folder with its source and licence).

pub mod mock_upstream;
