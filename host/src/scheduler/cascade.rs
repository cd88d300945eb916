//! The cascade: turning published artifacts into work items and queued invocations.
//!
//! A [`Cascade`] gathers one atomic [`Commit`]: the new artifacts, the work items they
//! create or touch, the invocations their subscriptions trigger and the completion of the
//! invocation that produced them. Work item records are read from the store once and
//! edited in place, so several changes to one work item in one commit compose.

use crate::artifact::{Artifact, ArtifactId, Visibility, now_ms};
use crate::blackboard::{Commit, Store, StoreError};
use crate::invocation::{AGENT_CAP_REASON, DEPTH_LIMIT_REASON, InvocationRecord, InvocationStatus};
use crate::observe::Event;
use crate::schema::{WORK_DISCOVERY, WORKFLOW_COMPLETE};
use crate::work::{Priority, WorkItem, WorkStatus};
use crate::workflow::Workflow;
use std::collections::HashMap;
use std::sync::Arc;

/// Counters the scheduler keeps across commits (derived from the store at start).
#[derive(Debug, Default)]
pub struct CascadeState {
    /// Next enqueue sequence number.
    pub next_seq: u64,
    /// Invocations created per agent.
    pub per_agent: HashMap<String, u64>,
}

/// One commit being assembled.
pub struct Cascade<'a> {
    wf: &'a Workflow,
    store: &'a dyn Store,
    workflow_id: &'a str,
    work: HashMap<ArtifactId, WorkItem>,
    work_order: Vec<ArtifactId>,
    artifacts: Vec<Arc<Artifact>>,
    invocations: Vec<InvocationRecord>,
    /// Events to report once the commit succeeds.
    pub events: Vec<Event>,
}

/// An artifact about to be published.
pub struct Draft {
    /// Type name.
    pub type_name: String,
    /// Schema-valid payload.
    pub payload: serde_json::Value,
    /// Producer.
    pub producer: String,
    /// Causality.
    pub parent_ids: Vec<ArtifactId>,
    /// Tags.
    pub tags: Vec<String>,
    /// Visibility.
    pub visibility: Visibility,
    /// Cascade depth.
    pub depth: u32,
    /// The work item it inherits (ignored for a WorkDiscovery, which starts its own).
    pub inherited_work: Option<ArtifactId>,
}

impl<'a> Cascade<'a> {
    /// Start an empty commit.
    pub fn new(wf: &'a Workflow, store: &'a dyn Store, workflow_id: &'a str) -> Self {
        Self {
            wf,
            store,
            workflow_id,
            work: HashMap::new(),
            work_order: Vec::new(),
            artifacts: Vec::new(),
            invocations: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The work item `id`, loaded once into this commit.
    pub fn work_item(&mut self, id: &ArtifactId) -> Result<Option<&mut WorkItem>, StoreError> {
        if !self.work.contains_key(id) {
            match self.store.work_item(id)? {
                Some(w) => {
                    self.work_order.push(id.clone());
                    self.work.insert(id.clone(), w);
                }
                None => return Ok(None),
            }
        }
        Ok(self.work.get_mut(id))
    }

    /// Record an invocation's new state.
    pub fn update_invocation(&mut self, record: InvocationRecord) {
        self.invocations.push(record);
    }

    /// Publish a draft: assign its id, start its work item if it is a WorkDiscovery, and
    /// enqueue the invocations its subscribers' subscriptions ask for.
    pub fn publish(
        &mut self,
        draft: Draft,
        state: &mut CascadeState,
    ) -> Result<ArtifactId, StoreError> {
        let id = ArtifactId::generate();
        let is_work = draft.type_name == WORK_DISCOVERY;
        let work_item = if is_work {
            Some(id.clone())
        } else {
            draft.inherited_work
        };
        let artifact = Arc::new(Artifact {
            id: id.clone(),
            type_name: draft.type_name,
            payload: draft.payload,
            producer: draft.producer,
            workflow_id: self.workflow_id.to_string(),
            parent_ids: draft.parent_ids,
            tags: draft.tags,
            visibility: draft.visibility,
            created_at_ms: now_ms(),
            depth: draft.depth,
            work_item: work_item.clone(),
        });
        if is_work {
            let p = &artifact.payload;
            let text = |k: &str| {
                p.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let item = WorkItem {
                id: id.clone(),
                workflow_id: self.workflow_id.to_string(),
                phase: text("phase"),
                priority: Priority::parse(&text("priority")),
                status: WorkStatus::Pending,
                description: text("description"),
                open_invocations: 0,
                invocations: 0,
                reason: None,
            };
            self.work_order.push(id.clone());
            self.work.insert(id.clone(), item);
        }
        self.enqueue_subscribers(&artifact, state)?;
        self.artifacts.push(artifact);
        Ok(id)
    }

    fn enqueue_subscribers(
        &mut self,
        artifact: &Arc<Artifact>,
        state: &mut CascadeState,
    ) -> Result<(), StoreError> {
        // WorkflowComplete marks the end of a run: it is a record, not a trigger.
        if artifact.type_name == WORKFLOW_COMPLETE {
            return Ok(());
        }
        let limits = self.wf.limits();
        let priority = match &artifact.work_item {
            Some(w) => self.work_item(w)?.map(|w| w.priority).unwrap_or_default(),
            None => Priority::Medium,
        };
        for agent in &self.wf.agents {
            if !artifact.visible_to(&agent.viewer()) {
                continue;
            }
            let mut matched = false;
            for sub in &agent.subscriptions {
                match sub.matches(artifact, agent.name()) {
                    Ok(true) => {
                        matched = true;
                        break;
                    }
                    Ok(false) => {}
                    Err(e) => self.events.push(Event::FilterFailed {
                        agent: agent.name().to_string(),
                        message: e.to_string(),
                    }),
                }
            }
            if !matched {
                continue;
            }
            let count = state.per_agent.entry(agent.name().to_string()).or_default();
            let cancelled = if artifact.depth >= limits.max_depth {
                Some(DEPTH_LIMIT_REASON)
            } else if limits.max_invocations_per_agent > 0
                && *count >= limits.max_invocations_per_agent
            {
                Some(AGENT_CAP_REASON)
            } else {
                None
            };
            if cancelled.is_none() {
                *count += 1;
            }
            let record = InvocationRecord {
                id: uuid::Uuid::now_v7().to_string(),
                workflow_id: self.workflow_id.to_string(),
                agent: agent.name().to_string(),
                inputs: vec![artifact.id.clone()],
                work_item: artifact.work_item.clone(),
                priority,
                seq: state.next_seq,
                depth: artifact.depth,
                status: if cancelled.is_some() {
                    InvocationStatus::Cancelled
                } else {
                    InvocationStatus::Queued
                },
                attempts: 0,
                error: cancelled.map(str::to_string),
                fault: None,
                outputs: Vec::new(),
            };
            state.next_seq += 1;
            if let Some(reason) = cancelled {
                if reason == DEPTH_LIMIT_REASON {
                    self.events.push(Event::DepthLimited {
                        artifact: artifact.id.to_string(),
                        type_name: artifact.type_name.clone(),
                        depth: artifact.depth,
                    });
                }
                if let Some(w) = artifact.work_item.as_ref()
                    && let Some(w) = self.work_item(w)?
                    && w.open_invocations == 0
                    && w.invocations == 0
                {
                    w.status = WorkStatus::Cancelled;
                    w.reason = Some(reason.to_string());
                }
            } else if let Some(w) = artifact.work_item.as_ref()
                && let Some(w) = self.work_item(w)?
            {
                w.open_invocations += 1;
                w.invocations += 1;
                if w.status == WorkStatus::Cancelled {
                    w.status = WorkStatus::Pending;
                    w.reason = None;
                }
            }
            self.invocations.push(record);
        }
        Ok(())
    }

    /// Apply everything gathered, atomically.
    pub fn commit(self) -> Result<Vec<Event>, StoreError> {
        let Cascade {
            store,
            mut work,
            work_order,
            artifacts,
            invocations,
            events,
            ..
        } = self;
        let work_items = work_order.iter().filter_map(|id| work.remove(id)).collect();
        store.commit(Commit {
            artifacts,
            work_items,
            invocations,
        })?;
        Ok(events)
    }
}
