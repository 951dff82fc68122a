//! Provider kinds: each kind's default base URL, auth and request quirks.
//!
//! Most kinds speak the OpenAI wire (their requests and answers pass through with at most a few fields
//! rewritten); a kind with another wire format names its [`Adapter`] ([`ProviderKind::adapter`]).
//! Facts from `shared/reference/providers.md` (sections 2, 4, 8–16 and the pitfalls checklist).

use super::adapter::Adapter;

/// A provider kind named in the config's `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    OpenAi,
    Moonshot,
    ZeroOne,
    DashScope,
    Qianfan,
    ModelArts,
    Hunyuan,
    Zhipu,
    SophNet,
    Vllm,
    Ollama,
    LlamaCpp,
    OpenAiCompatible,
    /// Anthropic Messages API (not OpenAI wire: translated by [`super::anthropic`]).
    Anthropic,
    /// Azure OpenAI: OpenAI wire, Azure addressing and `api-key` auth ([`super::azure`]).
    Azure,
    /// AWS Bedrock Converse / ConverseStream (not OpenAI wire: translated by [`super::bedrock`], SigV4 or a
    /// Bedrock API key).
    Bedrock,
    /// Google Gemini API, `generateContent` (not OpenAI wire: translated by [`super::gemini`]).
    Gemini,
    /// Google Vertex AI: Gemini (`publishers/google`) and Claude (`publishers/anthropic`) models, OAuth2
    /// service-account auth ([`super::vertex`]).
    Vertex,
    /// Tencent Hunyuan's native API 3.0, TC3-signed ([`super::hunyuan_native`]).
    HunyuanNative,
    /// Baidu Qianfan v1 (`wenxinworkshop`), OAuth access token in the query ([`super::qianfan_v1`]).
    QianfanV1,
    /// Alibaba DashScope's native text-generation API ([`super::dashscope_native`]).
    DashScopeNative,
}

/// Which field carries the output-token cap upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxTokensField {
    /// The upstream takes both `max_tokens` and `max_completion_tokens`: send what the client sent.
    AsSent,
    /// The upstream knows only `max_tokens`: rename `max_completion_tokens`.
    MaxTokens,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 21] = [
        Self::OpenAi,
        Self::Moonshot,
        Self::ZeroOne,
        Self::DashScope,
        Self::Qianfan,
        Self::ModelArts,
        Self::Hunyuan,
        Self::Zhipu,
        Self::SophNet,
        Self::Vllm,
        Self::Ollama,
        Self::LlamaCpp,
        Self::OpenAiCompatible,
        Self::Anthropic,
        Self::Azure,
        Self::Bedrock,
        Self::Gemini,
        Self::Vertex,
        Self::HunyuanNative,
        Self::QianfanV1,
        Self::DashScopeNative,
    ];

    /// The name used in config files and on usage events.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Moonshot => "moonshot",
            Self::ZeroOne => "zeroone",
            Self::DashScope => "dashscope",
            Self::Qianfan => "qianfan",
            Self::ModelArts => "modelarts",
            Self::Hunyuan => "hunyuan",
            Self::Zhipu => "zhipu",
            Self::SophNet => "sophnet",
            Self::Vllm => "vllm",
            Self::Ollama => "ollama",
            Self::LlamaCpp => "llamacpp",
            Self::OpenAiCompatible => "openai-compatible",
            Self::Anthropic => "anthropic",
            Self::Azure => "azure",
            Self::Bedrock => "bedrock",
            Self::Gemini => "gemini",
            Self::Vertex => "vertex",
            Self::HunyuanNative => "hunyuan-native",
            Self::QianfanV1 => "qianfan-v1",
            Self::DashScopeNative => "dashscope-native",
        }
    }

    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Base URL used when the config gives none (`None`: the config must give one).
    #[must_use]
    pub fn default_base_url(self) -> Option<&'static str> {
        Some(match self {
            Self::OpenAi => "https://api.openai.com/v1",
            Self::Moonshot => "https://api.moonshot.cn/v1",
            Self::ZeroOne => "https://api.lingyiwanwu.com/v1",
            Self::DashScope => "https://dashscope.aliyuncs.com/compatible-mode/v1",
            Self::Qianfan => "https://qianfan.baidubce.com/v2",
            Self::ModelArts => "https://api.modelarts-maas.com/v1",
            Self::Hunyuan => "https://api.hunyuan.cloud.tencent.com/v1",
            Self::Zhipu => "https://open.bigmodel.cn/api/paas/v4",
            Self::SophNet => "https://www.sophnet.com/api/open-apis/v1",
            Self::Vllm => "http://127.0.0.1:8000/v1",
            Self::Ollama => "http://127.0.0.1:11434/v1",
            Self::LlamaCpp => "http://127.0.0.1:8080/v1",
            // The API root, as the Anthropic SDKs take it (`/v1/messages` is appended).
            Self::Anthropic => "https://api.anthropic.com",
            // The API version root (`/models/{model}:generateContent` is appended).
            Self::Gemini => "https://generativelanguage.googleapis.com/v1beta",
            // TC3 signs the host; the action is a header, the path is always `/`.
            Self::HunyuanNative => "https://hunyuan.tencentcloudapi.com",
            // `/chat/{endpoint}` is appended; the token endpoint is `/oauth/2.0/token` on the same host.
            Self::QianfanV1 => "https://aip.baidubce.com/rpc/2.0/ai_custom/v1/wenxinworkshop",
            Self::DashScopeNative => "https://dashscope.aliyuncs.com/api/v1",
            // Azure: the resource's own endpoint; Bedrock: derived from `aws.region` (config/cloud.rs);
            // Vertex's host follows the region (`https://{region}-aiplatform.googleapis.com`): config derives it.
            Self::OpenAiCompatible | Self::Azure | Self::Bedrock | Self::Vertex => return None,
        })
    }

    /// Hosted services need a key; self-hosted servers run without one unless started with `--api-key`.
    /// Bedrock takes either API keys or AWS credentials (checked in `config/cloud.rs`); Vertex AI
    /// authenticates with a service account instead (its own config fields).
    #[must_use]
    pub fn requires_api_key(self) -> bool {
        !matches!(
            self,
            Self::Vllm
                | Self::Ollama
                | Self::LlamaCpp
                | Self::OpenAiCompatible
                | Self::Bedrock
                | Self::Vertex
        )
    }

    #[must_use]
    pub fn max_tokens_field(self) -> MaxTokensField {
        match self {
            // OpenAI and vLLM take both; a generic compatible server gets the request as the client wrote it.
            // Azure takes `max_completion_tokens` from api-version 2024-09-01-preview on.
            Self::OpenAi | Self::Vllm | Self::LlamaCpp | Self::OpenAiCompatible | Self::Azure => {
                MaxTokensField::AsSent
            }
            // Ollama's /v1 request struct has only max_tokens; the hosted ones document only max_tokens.
            Self::Moonshot
            | Self::ZeroOne
            | Self::DashScope
            | Self::Qianfan
            | Self::ModelArts
            | Self::Hunyuan
            | Self::Zhipu
            | Self::SophNet
            | Self::Ollama
            | Self::Anthropic
            | Self::Bedrock
            | Self::Gemini
            | Self::Vertex
            | Self::HunyuanNative
            | Self::QianfanV1
            | Self::DashScopeNative => MaxTokensField::MaxTokens,
        }
    }

    /// Whether usage must be asked for with `stream_options.include_usage` when streaming.
    /// Zhipu always sends usage in its last chunk and documents no `stream_options`.
    #[must_use]
    pub fn needs_include_usage_flag(self) -> bool {
        !matches!(
            self,
            Self::Zhipu
                | Self::Anthropic
                | Self::Bedrock
                | Self::Gemini
                | Self::Vertex
                | Self::HunyuanNative
                | Self::QianfanV1
                | Self::DashScopeNative
        )
    }

    /// The translator of a kind whose wire format is not OpenAI's; `None` for the OpenAI-wire kinds, whose
    /// requests and answers take the zero-copy path. Vertex's is Gemini's; [`super::Provider::adapter`]
    /// picks the Anthropic one for Claude models (the publisher follows the model).
    #[must_use]
    pub fn adapter(self) -> Option<&'static dyn Adapter> {
        match self {
            Self::Anthropic => Some(&super::anthropic::Anthropic),
            Self::Bedrock => Some(&super::bedrock::Bedrock),
            Self::Gemini => Some(&super::gemini::Gemini),
            Self::Vertex => Some(&super::vertex::VertexGemini),
            Self::HunyuanNative => Some(&super::hunyuan_native::HunyuanNative),
            Self::QianfanV1 => Some(&super::qianfan_v1::QianfanV1),
            Self::DashScopeNative => Some(&super::dashscope_native::DashScopeNative),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ProviderKind::from_name("vertex-x"), None);
        assert!(ProviderKind::Bedrock.adapter().is_some());
        assert!(
            ProviderKind::Azure.adapter().is_none(),
            "Azure is OpenAI wire"
        );
        assert!(ProviderKind::Anthropic.adapter().is_some());
        assert!(ProviderKind::OpenAi.adapter().is_none());
    }

    #[test]
    fn every_kind_but_the_generic_one_has_a_default_url() {
        for kind in ProviderKind::ALL {
            assert_eq!(
                kind.default_base_url().is_none(),
                matches!(
                    kind,
                    ProviderKind::OpenAiCompatible
                        | ProviderKind::Azure
                        | ProviderKind::Bedrock
                        | ProviderKind::Vertex
                )
            );
        }
    }
}
