//! Planning an invocation's discoveries before they are published: assigning their ids,
//! checking their `key`s, resolving `blocking_work_ids` (work item ids or keys, of earlier
//! work or of siblings in the same outputs) and refusing a dependency cycle.
//!
//! Only siblings can form a cycle: earlier work cannot wait for work that does not exist
//! yet, and a reference to nothing known is refused. A refusal fails the invocation as
//! `invalid_output` with a message naming the outputs involved; nothing is published.

use super::cascade::Cascade;
use super::execute::CheckedOutput;
use crate::artifact::ArtifactId;
use crate::blackboard::StoreError;
use crate::schema::WORK_DISCOVERY;
use std::collections::HashMap;

/// What planning decided for one output.
#[derive(Debug, Default)]
pub(super) struct Planned {
    /// The id it will be published under (discoveries only).
    pub id: Option<ArtifactId>,
    /// The work items it waits for.
    pub blocked_by: Vec<ArtifactId>,
}

/// Plan `outputs`; the inner error is the reason to refuse them.
pub(super) fn blocking(
    cascade: &mut Cascade<'_>,
    outputs: &[CheckedOutput],
) -> Result<Result<Vec<Planned>, String>, StoreError> {
    let mut plan: Vec<Planned> = outputs.iter().map(|_| Planned::default()).collect();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (i, out) in outputs.iter().enumerate() {
        if out.type_name != WORK_DISCOVERY {
            continue;
        }
        plan[i].id = Some(ArtifactId::generate());
        if let Some(key) = out.payload.get("key").and_then(|k| k.as_str()) {
            if let Some(existing) = cascade.keyed(key)? {
                return Ok(Err(format!(
                    "output #{i}: discovery key '{key}' is already used by work item {existing}"
                )));
            }
            if let Some(j) = keys.insert(key, i) {
                return Ok(Err(format!(
                    "outputs #{j} and #{i} both use discovery key '{key}'"
                )));
            }
        }
    }
    let mut edges: Vec<Vec<usize>> = vec![Vec::new(); outputs.len()];
    for (i, out) in outputs.iter().enumerate() {
        if out.type_name != WORK_DISCOVERY {
            continue;
        }
        let refs = out
            .payload
            .get("blocking_work_ids")
            .and_then(|b| b.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
            .unwrap_or_default();
        for (j, r) in refs.into_iter().enumerate() {
            let id = if let Some(&k) = keys.get(r) {
                if k == i {
                    return Ok(Err(format!(
                        "output #{i}: blocking_work_ids[{j}] = '{r}' is the discovery's own key; work cannot wait for itself"
                    )));
                }
                edges[i].push(k);
                plan[k].id
            } else if let Some(id) = cascade.keyed(r)? {
                Some(id)
            } else if let Some(id) = ArtifactId::parse(r) {
                cascade.work_item(&id)?.map(|_| id)
            } else {
                None
            };
            match id {
                Some(id) => plan[i].blocked_by.push(id),
                None => {
                    return Ok(Err(format!(
                        "output #{i}: blocking_work_ids[{j}] = '{r}' names no work item or discovery key in this workflow"
                    )));
                }
            }
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let label = |i: usize| {
            let key = outputs[i]
                .payload
                .get("key")
                .and_then(|k| k.as_str())
                .unwrap_or("?");
            format!("#{i} (key '{key}')")
        };
        let path: Vec<String> = cycle.iter().map(|&i| label(i)).collect();
        return Ok(Err(format!(
            "the discoveries' blocking_work_ids form a dependency cycle: {}; none of them could ever start",
            path.join(" waits for ")
        )));
    }
    Ok(Ok(plan))
}

/// A cycle in `edges` (as a path that returns to its start), if there is one.
///
/// Depth-first with an explicit stack, not recursion: a plugin's outputs (up to its
/// `max_outputs`, and a workflow's inputs, unbounded) may chain blockers thousands deep,
/// and the search must not run out of the thread's stack.
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Closed,
    }
    let mut marks = vec![Mark::New; edges.len()];
    // The path being walked, and for each node on it the next edge to follow.
    let mut path: Vec<usize> = Vec::new();
    let mut next_edge: Vec<usize> = Vec::new();
    for start in 0..edges.len() {
        if marks[start] != Mark::New {
            continue;
        }
        marks[start] = Mark::Open;
        path.push(start);
        next_edge.push(0);
        while let (Some(&n), Some(e)) = (path.last(), next_edge.last_mut()) {
            let Some(&m) = edges[n].get(*e) else {
                marks[n] = Mark::Closed;
                path.pop();
                next_edge.pop();
                continue;
            };
            *e += 1;
            match marks[m] {
                Mark::Open => {
                    let from = path.iter().position(|&x| x == m).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(m);
                    return Some(cycle);
                }
                Mark::New => {
                    marks[m] = Mark::Open;
                    path.push(m);
                    next_edge.push(0);
                }
                Mark::Closed => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::find_cycle;

    #[test]
    fn cycles_are_found_with_their_path_and_dags_pass() {
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![0]]),
            Some(vec![0, 1, 2, 0])
        );
        assert_eq!(find_cycle(&[vec![1, 2], vec![2], vec![]]), None);
        assert_eq!(find_cycle(&[vec![], vec![1]]), Some(vec![1, 1]));
        assert_eq!(
            find_cycle(&[vec![1], vec![2], vec![1]]),
            Some(vec![1, 2, 1]),
            "a cycle that does not return to the first node"
        );
    }

    #[test]
    fn a_chain_a_million_deep_is_searched_without_recursion() {
        let n = 1_000_000;
        let mut chain: Vec<Vec<usize>> = (0..n).map(|i| vec![i + 1]).collect();
        chain[n - 1] = vec![];
        assert_eq!(find_cycle(&chain), None);
        chain[n - 1] = vec![0];
        let cycle = find_cycle(&chain).expect("the chain closed");
        assert_eq!((cycle.len(), cycle[0], cycle[n]), (n + 1, 0, 0));
    }
}
