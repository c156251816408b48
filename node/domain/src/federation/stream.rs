//! One (origin hub → destination hub) stream: sequence numbers assigned by the origin's log,
//! applied exactly once and in order by the destination.
//!
//! Both sides keep their counters in replicated state, so a leader change on either side
//! neither reuses a number nor applies one twice. These are the pure rules; the store keeps
//! one [`Outbound`] per destination and one [`Inbound`] per origin.

use serde::{Deserialize, Serialize};

/// An inclusive, non-empty range of stream sequence numbers; the first message of a stream is 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    first: u64,
    last: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("a batch carries at least one message")]
    Empty,
    #[error("sequence numbers start at 1")]
    Zero,
    #[error("the sequence numbers of the stream are exhausted")]
    Exhausted,
    #[error("applied range must start at {expected}, not {got}")]
    NotNext { expected: u64, got: u64 },
    #[error("the peer acknowledged or expects sequence {claimed}, but only {assigned} were assigned")]
    AheadOfOrigin { claimed: u64, assigned: u64 },
    #[error("the peer expects sequence {expected}, but had acknowledged up to {acknowledged}")]
    PeerWentBack { expected: u64, acknowledged: u64 },
}

impl SeqRange {
    /// The range of a batch of `count` messages starting at `first`.
    pub fn of_batch(first: u64, count: u64) -> Result<Self, StreamError> {
        if count == 0 {
            return Err(StreamError::Empty);
        }
        if first == 0 {
            return Err(StreamError::Zero);
        }
        let last = first.checked_add(count - 1).ok_or(StreamError::Exhausted)?;
        Ok(Self { first, last })
    }

    pub fn first(&self) -> u64 {
        self.first
    }

    pub fn last(&self) -> u64 {
        self.last
    }

    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Never true (a range holds at least one number); here for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What the destination does with an arriving batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Apply `range`: the batch's messages after the first `skip` ones (those were applied
    /// before: the batch overlaps, e.g. a retry after a lost acknowledgement).
    Apply { range: SeqRange, skip: u64 },
    /// Everything in the batch was applied before: acknowledge, apply nothing.
    Duplicate,
    /// The batch starts after the next expected sequence: apply nothing, ask for `expected`.
    Gap { expected: u64 },
}

/// The destination's side of a stream from one origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inbound {
    /// Highest sequence applied; 0 before the first message.
    highest_applied: u64,
}

impl Inbound {
    pub fn highest_applied(&self) -> u64 {
        self.highest_applied
    }

    /// Classifies a batch covering `batch`. Pure: the caller applies, then [`Inbound::record`]s.
    pub fn classify(&self, batch: SeqRange) -> Arrival {
        if batch.last <= self.highest_applied {
            return Arrival::Duplicate;
        }
        // Cannot overflow: highest_applied < batch.last <= u64::MAX.
        let expected = self.highest_applied + 1;
        if batch.first > expected {
            return Arrival::Gap { expected };
        }
        let range = SeqRange { first: expected, last: batch.last };
        Arrival::Apply { range, skip: expected - batch.first }
    }

    /// Records that `applied` was applied; it must continue the stream exactly.
    pub fn record(&mut self, applied: SeqRange) -> Result<(), StreamError> {
        let expected = self.highest_applied.saturating_add(1);
        if applied.first != expected {
            return Err(StreamError::NotNext { expected, got: applied.first });
        }
        self.highest_applied = applied.last;
        Ok(())
    }
}

/// The origin's side of a stream to one destination.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    /// Highest sequence assigned to a queued message; 0 before the first.
    last_assigned: u64,
    /// Highest sequence the destination confirmed as applied.
    acknowledged: u64,
}

impl Outbound {
    pub fn last_assigned(&self) -> u64 {
        self.last_assigned
    }

    pub fn acknowledged(&self) -> u64 {
        self.acknowledged
    }

    /// Assigns the next `count` sequence numbers to messages entering the outbox. Called in
    /// apply, so every node assigns the same numbers.
    pub fn assign(&mut self, count: u64) -> Result<SeqRange, StreamError> {
        let range = SeqRange::of_batch(self.last_assigned.checked_add(1).ok_or(StreamError::Exhausted)?, count)?;
        self.last_assigned = range.last;
        Ok(range)
    }

    /// What is queued and not yet acknowledged, oldest first.
    pub fn pending(&self) -> Option<SeqRange> {
        (self.acknowledged < self.last_assigned)
            .then_some(SeqRange { first: self.acknowledged + 1, last: self.last_assigned })
    }

    /// The destination applied everything up to `upto`. An older acknowledgement arriving late
    /// changes nothing.
    pub fn acknowledge(&mut self, upto: u64) -> Result<(), StreamError> {
        if upto > self.last_assigned {
            return Err(StreamError::AheadOfOrigin { claimed: upto, assigned: self.last_assigned });
        }
        self.acknowledged = self.acknowledged.max(upto);
        Ok(())
    }

    /// The destination reported a gap: it applied everything before `expected`. Returns what to
    /// send again. A destination that goes back behind its own acknowledgement lost replicated
    /// state; that is refused rather than silently resent.
    pub fn on_gap(&mut self, expected: u64) -> Result<Option<SeqRange>, StreamError> {
        let applied = expected.checked_sub(1).ok_or(StreamError::Zero)?;
        if applied < self.acknowledged {
            return Err(StreamError::PeerWentBack { expected, acknowledged: self.acknowledged });
        }
        self.acknowledge(applied)?;
        Ok(self.pending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(first: u64, count: u64) -> SeqRange {
        SeqRange::of_batch(first, count).unwrap()
    }

    fn at(highest: u64) -> Inbound {
        Inbound { highest_applied: highest }
    }

    #[test]
    fn ranges() {
        assert_eq!((r(3, 2).first(), r(3, 2).last(), r(3, 2).len()), (3, 4, 2));
        assert_eq!(SeqRange::of_batch(1, 0), Err(StreamError::Empty));
        assert_eq!(SeqRange::of_batch(0, 1), Err(StreamError::Zero));
        assert_eq!(SeqRange::of_batch(u64::MAX, 2), Err(StreamError::Exhausted));
        assert_eq!(r(u64::MAX, 1).last(), u64::MAX);
    }

    #[test]
    fn first_batch_of_a_stream_applies() {
        assert_eq!(Inbound::default().classify(r(1, 3)), Arrival::Apply { range: r(1, 3), skip: 0 });
    }

    #[test]
    fn next_batch_applies_whole() {
        assert_eq!(at(5).classify(r(6, 2)), Arrival::Apply { range: r(6, 2), skip: 0 });
    }

    #[test]
    fn overlapping_batch_applies_only_the_new_tail() {
        // Applied 1..=5; a retry of 3..=8 applies 6..=8 and skips its first three messages.
        assert_eq!(at(5).classify(r(3, 6)), Arrival::Apply { range: r(6, 3), skip: 3 });
    }

    #[test]
    fn replayed_batch_is_a_duplicate() {
        assert_eq!(at(5).classify(r(3, 3)), Arrival::Duplicate);
        assert_eq!(at(5).classify(r(1, 1)), Arrival::Duplicate);
        assert_eq!(at(5).classify(r(5, 1)), Arrival::Duplicate);
    }

    #[test]
    fn batch_after_a_hole_is_a_gap_naming_the_expected_sequence() {
        assert_eq!(at(5).classify(r(7, 2)), Arrival::Gap { expected: 6 });
        assert_eq!(Inbound::default().classify(r(2, 1)), Arrival::Gap { expected: 1 });
    }

    #[test]
    fn record_continues_the_stream_exactly() {
        let mut s = at(5);
        assert_eq!(s.record(r(7, 1)), Err(StreamError::NotNext { expected: 6, got: 7 }));
        assert_eq!(s.record(r(5, 2)), Err(StreamError::NotNext { expected: 6, got: 5 }));
        s.record(r(6, 3)).unwrap();
        assert_eq!(s.highest_applied(), 8);
        assert_eq!(s.classify(r(6, 3)), Arrival::Duplicate);
    }

    #[test]
    fn classify_then_record_applies_each_message_once_whatever_arrives() {
        // Batches arrive out of order, duplicated and overlapping; each sequence applies once.
        let arrivals = [r(1, 3), r(1, 3), r(5, 2), r(2, 4), r(4, 4), r(1, 7), r(9, 1), r(8, 1), r(8, 2)];
        let (mut s, mut applied) = (Inbound::default(), Vec::new());
        for batch in arrivals {
            if let Arrival::Apply { range, skip } = s.classify(batch) {
                let messages: Vec<u64> = (batch.first()..=batch.last()).collect();
                applied.extend(messages.iter().skip(skip as usize).copied());
                s.record(range).unwrap();
            }
        }
        assert_eq!(applied, (1..=9).collect::<Vec<_>>());
    }

    #[test]
    fn outbound_assigns_consecutive_numbers() {
        let mut o = Outbound::default();
        assert_eq!(o.pending(), None);
        assert_eq!(o.assign(2), Ok(r(1, 2)));
        assert_eq!(o.assign(1), Ok(r(3, 1)));
        assert_eq!(o.assign(0), Err(StreamError::Empty));
        assert_eq!((o.last_assigned(), o.pending()), (3, Some(r(1, 3))));
    }

    #[test]
    fn outbound_exhaustion_is_an_error_not_a_wrap() {
        let mut o = Outbound { last_assigned: u64::MAX - 1, acknowledged: 0 };
        assert_eq!(o.assign(1), Ok(r(u64::MAX, 1)));
        assert_eq!(o.assign(1), Err(StreamError::Exhausted));
    }

    #[test]
    fn acknowledgements_shrink_what_is_pending() {
        let mut o = Outbound::default();
        o.assign(5).unwrap();
        o.acknowledge(3).unwrap();
        assert_eq!(o.pending(), Some(r(4, 2)));
        o.acknowledge(2).unwrap(); // late, older acknowledgement
        assert_eq!(o.acknowledged(), 3);
        assert_eq!(o.acknowledge(6), Err(StreamError::AheadOfOrigin { claimed: 6, assigned: 5 }));
        o.acknowledge(5).unwrap();
        assert_eq!(o.pending(), None);
    }

    #[test]
    fn a_gap_report_resends_from_the_expected_sequence() {
        let mut o = Outbound::default();
        o.assign(6).unwrap();
        o.acknowledge(2).unwrap();
        assert_eq!(o.on_gap(4), Ok(Some(r(4, 3))));
        assert_eq!(o.acknowledged(), 3);
        assert_eq!(o.on_gap(2), Err(StreamError::PeerWentBack { expected: 2, acknowledged: 3 }));
        assert_eq!(o.on_gap(9), Err(StreamError::AheadOfOrigin { claimed: 8, assigned: 6 }));
        assert_eq!(o.on_gap(0), Err(StreamError::Zero));
        assert_eq!(o.on_gap(7), Ok(None));
    }
}
