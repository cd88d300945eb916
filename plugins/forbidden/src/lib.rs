//! A test agent that imports the `llm` interface. Loaded without `grants = ["llm"]`, the
//! host must refuse it, naming the plugin, the import and the manifest key.

use murmur_guest::prelude::*;
use murmur_guest::bindings::murmur::plugin::llm;

struct Forbidden;

impl Agent for Forbidden {
    fn describe() -> PluginInfo {
        PluginInfo::agent("forbidden", env!("CARGO_PKG_VERSION")).description("imports llm")
    }

    fn handle(inv: Invocation) -> Result<Vec<Output>, PluginError> {
        let answer = llm::complete(&llm::CompletionRequest {
            system: "You are a test.".into(),
            messages: vec![llm::Message { role: "user".into(), content: inv.invocation_id.clone() }],
            json_schema: None,
            max_tokens: Some(8),
            temperature: None,
        })
        .map_err(|e| PluginError::failed(format!("llm: {e:?}")))?;
        Ok(vec![Output::json("Note", &serde_json::json!({ "answer": answer.content }))?])
    }
}

murmur_guest::export_agent!(Forbidden);
