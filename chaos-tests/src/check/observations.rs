//! Checker 7: disaster mode's store-and-forward. Every safety check and facility status a node
//! accepted (applied at once, or pending on a node cut off from the quorum) is applied exactly
//! once on every node —
//! found by its id, and no recording (its unique note) applied twice under two ids, as a retry
//! on another node would be if ids were not derived from the request —; none is left pending
//! after healing; nothing appears that no recorder sent; every node holds the same checks; and
//! each subject's current record is the latest by (observed at, id) — the domain's merge rule,
//! computed here independently — whatever order the checks reached the log in.

use std::collections::{BTreeSet, HashMap};

use super::Findings;
use crate::workload::observer::{CheckOp, CheckOutcome, PatientChecks, Subject};

/// Every node's records: per node, per subject.
pub type NodeChecks = Vec<(Subject, PatientChecks)>;

pub fn check(ops: &[CheckOp], nodes: &[NodeChecks], f: &mut Findings) {
    let sent: BTreeSet<&str> = ops.iter().map(|o| o.note.as_str()).collect();
    for op in ops {
        match op.outcome {
            CheckOutcome::Applied => f.checks_applied += 1,
            CheckOutcome::Pending => f.checks_pending += 1,
            CheckOutcome::Unknown => f.checks_unknown += 1,
        }
    }
    for (n, node) in nodes.iter().enumerate() {
        let (mut seen, mut by_note): (HashMap<&str, usize>, HashMap<&str, usize>) = Default::default();
        for (subject, checks) in node {
            if checks.pending > 0 {
                f.check_violations.push(format!("node {n}: {} records of {subject:?} still pending", checks.pending));
            }
            for (id, _, note) in &checks.applied {
                *seen.entry(id.as_str()).or_default() += 1;
                *by_note.entry(note.as_str()).or_default() += 1;
                if !sent.contains(note.as_str()) {
                    f.check_violations.push(format!("node {n}: check {id} ({note}) that no recorder sent"));
                }
            }
            let latest = checks.applied.iter().max_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0))).map(|l| &l.0);
            if latest != checks.current.as_ref() {
                f.check_violations.push(format!(
                    "node {n}: {subject:?}'s current record is {:?}, the latest is {latest:?}",
                    checks.current
                ));
            }
        }
        for op in ops.iter().filter(|o| o.outcome != CheckOutcome::Unknown) {
            let id = op.observation_id.as_deref().unwrap_or_default();
            match seen.get(id).copied().unwrap_or(0) {
                1 => {}
                0 => f
                    .check_violations
                    .push(format!("node {n}: {:?} check {id} ({}) lost", op.outcome, op.idempotency_key)),
                k => f.check_violations.push(format!("node {n}: check {id} applied {k} times")),
            }
        }
        for (note, k) in by_note.into_iter().filter(|(_, k)| *k > 1) {
            f.check_violations.push(format!("node {n}: the recording {note} applied {k} times under different ids"));
        }
    }
    if nodes.windows(2).any(|w| w[0] != w[1]) {
        f.check_violations.push("the nodes hold different checks".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, outcome: CheckOutcome) -> CheckOp {
        CheckOp {
            recorder: 0,
            subject: Subject::Patient(1),
            idempotency_key: format!("k-{id}"),
            note: format!("note-{id}"),
            observation_id: (outcome != CheckOutcome::Unknown).then(|| id.to_owned()),
            outcome,
            node: 0,
            invoked_ms: 0,
            completed_ms: 1,
            attempts: 1,
        }
    }

    fn node(applied: &[(&str, u64)], current: &str, pending: usize) -> NodeChecks {
        let applied = applied.iter().map(|(id, at)| ((*id).to_owned(), *at, format!("note-{id}"))).collect();
        vec![(Subject::Patient(1), PatientChecks { applied, pending, current: Some(current.to_owned()) })]
    }

    #[test]
    fn checks_applied_once_everywhere_and_merged_by_time_pass() {
        // cc was never answered, yet applied: allowed.
        let ops = [op("aa", CheckOutcome::Applied), op("bb", CheckOutcome::Pending), op("cc", CheckOutcome::Unknown)];
        let one = node(&[("aa", 10), ("bb", 5), ("cc", 7)], "aa", 0);
        let mut f = Findings::default();
        check(&ops, &[one.clone(), one], &mut f);
        assert!(f.check_violations.is_empty(), "{:?}", f.check_violations);
        assert_eq!((f.checks_applied, f.checks_pending, f.checks_unknown), (1, 1, 1));
    }

    #[test]
    fn a_lost_pending_check_a_duplicate_a_leftover_and_a_wrong_merge_are_each_found() {
        let ops = [op("aa", CheckOutcome::Applied), op("bb", CheckOutcome::Pending)];
        let mut f = Findings::default();
        // bb never arrived; aa twice; one still pending; the current is not the latest.
        check(&ops, &[node(&[("aa", 10), ("aa", 10), ("zz", 20)], "aa", 1)], &mut f);
        let found = f.check_violations.join("\n");
        for expected in
            ["lost", "applied 2 times", "still pending", "no recorder sent", "the latest is", "under different ids"]
        {
            assert!(found.contains(expected), "{expected:?} missing from:\n{found}");
        }
    }
}
