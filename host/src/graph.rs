//! The cascade as a graph: artifacts and their causality, grouped by the phase of the work
//! they served — what `murmur graph` prints as Mermaid, Graphviz DOT or JSON.

use crate::artifact::{Artifact, ArtifactId, SharedArtifact, Viewer};
use crate::blackboard::{ArtifactQuery, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// One artifact.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// The artifact id.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Who produced it.
    pub producer: String,
    /// The phase of the work it served (`""` for none: inputs without work, host records).
    pub phase: String,
    /// A short human label.
    pub label: String,
    /// The work item it served, if any (its branch of the cascade).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_item: Option<String>,
}

/// A causality edge: `to` was produced from `from`.
#[derive(Debug, Clone, Serialize)]
pub struct Edge {
    /// The parent.
    pub from: String,
    /// The child.
    pub to: String,
}

/// A run's cascade.
#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    /// The run.
    pub workflow_id: String,
    /// Every artifact, in publish order.
    pub nodes: Vec<Node>,
    /// Every parent link.
    pub edges: Vec<Edge>,
}

fn label(a: &Artifact) -> String {
    let text = ["description", "plan", "summary", "phase_name", "status"]
        .iter()
        .find_map(|k| a.payload.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("");
    let mut short: String = text.chars().take(48).collect();
    if text.chars().count() > 48 {
        short.push('…');
    }
    if short.is_empty() {
        a.type_name.to_string()
    } else {
        format!("{}: {short}", a.type_name)
    }
}

impl Graph {
    /// The graph of `workflow_id` (every artifact, whatever its visibility: this is the
    /// operator's view).
    pub fn from_store(store: &dyn Store, workflow_id: &str) -> Result<Self, StoreError> {
        let phases: HashMap<ArtifactId, String> = store
            .work_items(workflow_id)?
            .into_iter()
            .map(|w| (w.id, w.phase.to_string()))
            .collect();
        let query = ArtifactQuery {
            workflow_id: workflow_id.to_string(),
            type_name: None,
            tags: Vec::new(),
            limit: usize::MAX,
        };
        let artifacts: Vec<SharedArtifact> = store.query(&query, &Viewer::operator())?;
        let mut nodes = Vec::with_capacity(artifacts.len());
        let mut edges = Vec::new();
        for a in &artifacts {
            let phase = a
                .work_item
                .as_ref()
                .and_then(|w| phases.get(w).cloned())
                .unwrap_or_default();
            nodes.push(Node {
                id: a.id.to_string(),
                type_name: a.type_name.to_string(),
                producer: a.producer.to_string(),
                phase,
                label: label(a),
                work_item: a.work_item.as_ref().map(|w| w.to_string()),
            });
            for p in &a.parent_ids {
                edges.push(Edge {
                    from: p.to_string(),
                    to: a.id.to_string(),
                });
            }
        }
        Ok(Graph {
            workflow_id: workflow_id.to_string(),
            nodes,
            edges,
        })
    }

    fn by_phase(&self) -> BTreeMap<&str, Vec<(usize, &Node)>> {
        let mut groups: BTreeMap<&str, Vec<(usize, &Node)>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            groups.entry(n.phase.as_str()).or_default().push((i, n));
        }
        groups
    }

    fn index(&self) -> HashMap<&str, usize> {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect()
    }

    /// Mermaid flowchart, one subgraph per phase.
    pub fn mermaid(&self) -> String {
        let esc = |s: &str| s.replace('"', "'");
        let mut out = String::from("flowchart LR\n");
        for (phase, nodes) in self.by_phase() {
            let name = if phase.is_empty() { "no phase" } else { phase };
            let _ = writeln!(out, "  subgraph {}[\"{}\"]", slug(name), esc(name));
            for (i, n) in nodes {
                let _ = writeln!(
                    out,
                    "    n{i}[\"{}<br/><i>{}</i>\"]",
                    esc(&n.label),
                    esc(&n.producer)
                );
            }
            out.push_str("  end\n");
        }
        let index = self.index();
        for e in &self.edges {
            if let (Some(f), Some(t)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
                let _ = writeln!(out, "  n{f} --> n{t}");
            }
        }
        out
    }

    /// Graphviz DOT, one cluster per phase.
    pub fn dot(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::from("digraph cascade {\n  rankdir=LR;\n  node [shape=box];\n");
        for (phase, nodes) in self.by_phase() {
            let name = if phase.is_empty() { "no phase" } else { phase };
            let _ = writeln!(
                out,
                "  subgraph cluster_{} {{\n    label=\"{}\";",
                slug(name),
                esc(name)
            );
            for (i, n) in nodes {
                let _ = writeln!(
                    out,
                    "    n{i} [label=\"{}\\n({})\"];",
                    esc(&n.label),
                    esc(&n.producer)
                );
            }
            out.push_str("  }\n");
        }
        let index = self.index();
        for e in &self.edges {
            if let (Some(f), Some(t)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
                let _ = writeln!(out, "  n{f} -> n{t};");
            }
        }
        out.push_str("}\n");
        out
    }
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
