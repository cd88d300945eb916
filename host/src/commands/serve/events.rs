//! A run's events as Server-Sent Events, read from the store.
//!
//! Two sources make the stream: the loop's recorded events (routed, duplicate,
//! released, retried, fault, run ended, …; numbered by the store) and the run's
//! artifacts (each one a `published` event; numbered by its position in the run). An
//! event's id is both positions, `E.A`: a client that reconnects with `Last-Event-ID`
//! (or `?after=E.A`) goes on after the last event it saw, from this server or from one
//! started since on the same store, with nothing lost and nothing twice. Nothing is
//! kept per client but the two positions: the stream reads the store, and sleeps until
//! the server says something happened (or a second passes).

use super::api::Query;
use super::api::{ApiError, AppState};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use murmur::artifact::SharedArtifact;
use murmur::blackboard::StoredEvent;
use serde::Deserialize;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::IntoParams;

/// Where a stream starts.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct After {
    /// The id of the last event seen (as `Last-Event-ID`, which wins if both are given).
    after: Option<String>,
}

/// Both positions: the last recorded event's number, and how many artifacts were seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Cursor {
    event: u64,
    artifacts: u64,
}

impl Cursor {
    fn parse(text: &str) -> Option<Self> {
        let (e, a) = text.trim().split_once('.')?;
        Some(Self {
            event: e.parse().ok()?,
            artifacts: a.parse().ok()?,
        })
    }

    fn id(self) -> String {
        format!("{}.{}", self.event, self.artifacts)
    }
}

/// Events read ahead of the client, in the order they are sent.
enum Item {
    Recorded(StoredEvent),
    Published(SharedArtifact),
}

impl Item {
    fn at_ms(&self) -> u64 {
        match self {
            Item::Recorded(e) => e.at_ms,
            Item::Published(a) => a.created_at_ms,
        }
    }

    /// Where it goes in the stream: by time; within a millisecond, recorded events
    /// first (an artifact's routing is recorded as it is published), then artifacts,
    /// and a run's end last, after the `WorkflowComplete` its end published: a client
    /// that stops at `run_ended` has seen everything of the run.
    fn order(&self) -> (u64, u8) {
        let rank = match self {
            Item::Recorded(e) if e.kind == "run_ended" => 2,
            Item::Recorded(_) => 0,
            Item::Published(_) => 1,
        };
        (self.at_ms(), rank)
    }
}

/// Stream a run's events (`text/event-stream`): every recorded event under its kind
/// (`work_routed`, `work_duplicate`, `work_unblocked`, `invocation_retrying`,
/// `invocation_failed`, `run_ended`, …) and every artifact as `published`. Each event's
/// `id` resumes the stream after it (`Last-Event-ID`).
#[utoipa::path(get, path = "/v1/workflows/{id}/events", params(("id" = String, Path), After,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses((status = 200, description = "Server-Sent Events", content_type = "text/event-stream"),
        (status = 400, body = super::api::ErrorBody), (status = 404, body = super::api::ErrorBody)))]
pub(crate) async fn stream(
    State(runs): State<AppState>,
    axum::Extension(access): axum::Extension<super::auth::Access>,
    Path(id): Path<String>,
    Query(after): Query<After>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // Held for as long as the client follows: the run's records stay in memory.
    let reading = runs.record(&id)?;
    let given = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(after.after);
    let cursor = match given {
        Some(text) => Cursor::parse(&text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("event id '{text}': expected the id of an event this stream sent"),
            )
        })?,
        None => Cursor::default(),
    };
    let state = (runs, id, cursor, VecDeque::<Item>::new(), access, reading);
    let stream = futures_util::stream::unfold(
        state,
        |(runs, id, mut cursor, mut ahead, access, reading)| async move {
            loop {
                if let Some(item) = ahead.pop_front() {
                    // A token limited to a tenant sees the artifacts it may read and the
                    // run's end; the loop's other events speak of every tenant's work.
                    // What it may not see is passed over, its position counted.
                    let hidden = access.tenant.is_some()
                        && match &item {
                            Item::Recorded(e) => e.kind != "run_ended",
                            Item::Published(a) => !access.sees(a),
                        };
                    let event = match item {
                        Item::Recorded(e) if hidden => {
                            cursor.event = e.seq;
                            continue;
                        }
                        Item::Published(_) if hidden => {
                            cursor.artifacts += 1;
                            continue;
                        }
                        Item::Recorded(e) => {
                            cursor.event = e.seq;
                            SseEvent::default()
                                .event(e.kind.clone())
                                .data(e.data.to_string())
                        }
                        Item::Published(a) => {
                            cursor.artifacts += 1;
                            SseEvent::default().event("published").data(
                            json!({
                                "kind": "published",
                                "id": a.id.to_string(),
                                "type": &*a.type_name,
                                "producer": &*a.producer,
                                "work_item": a.work_item.map(|w| w.to_string()),
                                "parent_ids": a.parent_ids.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                                "created_at_ms": a.created_at_ms,
                            })
                            .to_string(),
                        )
                        }
                    };
                    return Some((
                        Ok(event.id(cursor.id())),
                        (runs, id, cursor, ahead, access, reading),
                    ));
                }
                // Subscribe before reading, so nothing recorded in between is slept through.
                let woken = runs.activity.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                if runs.is_closing() {
                    return None;
                }
                match read_ahead(&runs, &id, cursor) {
                    Ok(items) if !items.is_empty() => {
                        ahead = items;
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("event stream of run {id}: {e}");
                    }
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), woken).await;
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The next events after `cursor`, both sources merged in [`Item::order`].
fn read_ahead(
    runs: &AppState,
    id: &str,
    cursor: Cursor,
) -> Result<VecDeque<Item>, murmur::blackboard::StoreError> {
    const PAGE: usize = 256;
    let store = runs.store();
    let recorded = store.events_after(id, cursor.event, PAGE)?;
    let published = store.artifacts_from(id, cursor.artifacts, PAGE)?;
    // Past the last of a full page, the other source may have more that is earlier:
    // send only what is certainly in order.
    let recorded_until = (recorded.len() == PAGE)
        .then(|| recorded.last().map(|e| e.at_ms))
        .flatten();
    let published_until = (published.len() == PAGE)
        .then(|| published.last().map(|a| a.created_at_ms))
        .flatten();
    let until = match (recorded_until, published_until) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => u64::MAX,
    };
    let mut r = recorded.into_iter().map(Item::Recorded).peekable();
    let mut p = published.into_iter().map(Item::Published).peekable();
    let mut out = VecDeque::new();
    loop {
        let next = match (r.peek(), p.peek()) {
            (Some(a), Some(b)) => {
                if a.order() <= b.order() {
                    r.next()
                } else {
                    p.next()
                }
            }
            (Some(_), None) => r.next(),
            (None, Some(_)) => p.next(),
            (None, None) => None,
        };
        match next {
            Some(item) if item.at_ms() <= until || out.is_empty() => out.push_back(item),
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn an_event_id_reads_back_as_the_positions_it_names() {
        let c = Cursor {
            event: 12,
            artifacts: 340,
        };
        assert_eq!(Cursor::parse(&c.id()), Some(c));
        for bad in ["", "12", "a.b", "1.2.3", "-1.2"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
