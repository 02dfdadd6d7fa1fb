//! The task lifecycle: the status set, the allowed transitions, and the function that applies
//! an event to a task's state. SQL never decides a transition: it applies the target state the
//! domain computed, guarded by the source states the domain allows.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::validation::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Running,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

/// Every transition the lifecycle allows, as (from, to). Anything else is rejected.
pub const ALLOWED_TRANSITIONS: [(Status, Status); 10] = [
    (Status::Pending, Status::Running),   // claim
    (Status::Failed, Status::Running),    // retry claim once run_after passed
    (Status::Running, Status::Running),   // re-claim after the lease expired
    (Status::Running, Status::Pending),   // release: claimed, never started
    (Status::Running, Status::Succeeded), // executor succeeded
    (Status::Running, Status::Failed),    // retryable failure, attempts remain
    (Status::Running, Status::Dead),      // permanent failure or attempts exhausted
    (Status::Pending, Status::Cancelled), // user cancel
    (Status::Failed, Status::Cancelled),  // user cancel
    (Status::Dead, Status::Pending),      // operator redrive
];

impl Status {
    pub const ALL: [Status; 6] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Dead,
        Self::Cancelled,
    ];

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == raw)
            .ok_or_else(|| {
                FieldError::new(
                    "/status",
                    "must be one of: pending, running, succeeded, failed, dead, cancelled",
                )
            })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// No event moves a task out of a terminal status, except the operator's redrive of `dead`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Dead | Self::Cancelled)
    }

    pub fn can_transition(from: Status, to: Status) -> bool {
        ALLOWED_TRANSITIONS.contains(&(from, to))
    }

    /// The statuses from which `to` can be reached, in table order.
    pub fn sources_of(to: Status) -> Vec<Status> {
        ALLOWED_TRANSITIONS
            .iter()
            .filter(|(_, t)| *t == to)
            .map(|(f, _)| *f)
            .collect()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can happen to a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// A worker claims the task. `due`: `run_after` has passed; `lease_expired`: a running
    /// task's lease has run out (its worker crashed).
    Claim { due: bool, lease_expired: bool },
    /// The executor succeeded.
    Succeed,
    /// The executor failed; `retryable` says whether another attempt may succeed.
    Fail { retryable: bool },
    /// The reaper found the lease expired without an outcome.
    LeaseExpired,
    /// A user cancels the task.
    Cancel,
    /// An operator redrives a dead task.
    Redrive,
    /// The worker claimed the task but did not start it before its deadline: the claim is
    /// given back (its attempt not counted). `claimed_from` is the status the claim took it
    /// from: a `pending` task becomes `pending` again; a `failed` one, or one re-claimed after
    /// an expired lease, `failed` (claimable again at once).
    Release { claimed_from: Status },
}

impl LifecycleEvent {
    /// The statuses a task may be in for the event to apply (whatever its attempts): where a
    /// bulk action looks for its tasks. The domain still decides each task.
    pub fn applies_from(self) -> Vec<Status> {
        Status::ALL
            .into_iter()
            .filter(|&status| {
                [0, 1].into_iter().any(|attempts| {
                    Lifecycle {
                        status,
                        attempts,
                        max_attempts: 1,
                    }
                    .apply(self)
                    .is_ok()
                })
            })
            .collect()
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Claim { .. } => "claim",
            Self::Succeed => "succeed",
            Self::Fail { .. } => "fail",
            Self::LeaseExpired => "expire the lease of",
            Self::Cancel => "cancel",
            Self::Redrive => "redrive",
            Self::Release { .. } => "release",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {event} a {from} task{reason}")]
pub struct TransitionError {
    pub from: Status,
    pub event: &'static str,
    pub reason: &'static str,
}

/// The part of a task the lifecycle depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    pub status: Status,
    pub attempts: u32,
    pub max_attempts: u32,
}

impl Lifecycle {
    pub fn new(max_attempts: u32) -> Self {
        Self {
            status: Status::Pending,
            attempts: 0,
            max_attempts,
        }
    }

    pub fn attempts_left(&self) -> bool {
        self.attempts < self.max_attempts
    }

    /// Applies `event`, returning the new state or why the event is not allowed now.
    ///
    /// # Errors
    /// [`TransitionError`] when the event is not allowed from the current state.
    pub fn apply(self, event: LifecycleEvent) -> Result<Lifecycle, TransitionError> {
        use LifecycleEvent as E;
        use Status as S;
        let refuse = |reason: &'static str| TransitionError {
            from: self.status,
            event: event.name(),
            reason,
        };
        let to = |status: Status, attempts: u32| Lifecycle {
            status,
            attempts,
            ..self
        };
        let next = match (self.status, event) {
            (S::Pending | S::Failed | S::Running, E::Claim { due, lease_expired }) => {
                if self.status == S::Running && !lease_expired {
                    return Err(refuse(" whose lease is still valid"));
                }
                if self.status != S::Running && !due {
                    return Err(refuse(" before its run_after"));
                }
                if !self.attempts_left() {
                    return Err(refuse(" that has no attempts left"));
                }
                to(S::Running, self.attempts + 1)
            }
            (S::Running, E::Succeed) => to(S::Succeeded, self.attempts),
            (S::Running, E::Fail { retryable }) => {
                if retryable && self.attempts_left() {
                    to(S::Failed, self.attempts)
                } else {
                    to(S::Dead, self.attempts)
                }
            }
            (S::Running, E::LeaseExpired) => {
                if self.attempts_left() {
                    to(S::Failed, self.attempts)
                } else {
                    to(S::Dead, self.attempts)
                }
            }
            (S::Pending | S::Failed, E::Cancel) => to(S::Cancelled, self.attempts),
            (S::Dead, E::Redrive) => to(S::Pending, 0),
            (S::Running, E::Release { claimed_from }) => {
                if self.attempts == 0 {
                    return Err(refuse(" that was never claimed"));
                }
                let back = if claimed_from == S::Pending {
                    S::Pending
                } else {
                    S::Failed
                };
                to(back, self.attempts - 1)
            }
            _ => return Err(refuse("")),
        };
        debug_assert!(Status::can_transition(self.status, next.status));
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The whole transition table: every (from, to) pair and whether it is allowed.
    #[test]
    fn transition_table_is_exactly_the_specified_one() {
        use Status::*;
        let expected: [(Status, [bool; 6]); 6] = [
            //            Pending Running Succeeded Failed Dead  Cancelled
            (Pending, [false, true, false, false, false, true]),
            (Running, [true, true, true, true, true, false]),
            (Succeeded, [false, false, false, false, false, false]),
            (Failed, [false, true, false, false, false, true]),
            (Dead, [true, false, false, false, false, false]),
            (Cancelled, [false, false, false, false, false, false]),
        ];
        let mut allowed = 0;
        for (from, row) in expected {
            for (to, want) in Status::ALL.into_iter().zip(row) {
                assert_eq!(
                    Status::can_transition(from, to),
                    want,
                    "{from} -> {to} should be {}",
                    if want { "allowed" } else { "forbidden" }
                );
                allowed += usize::from(want);
            }
        }
        assert_eq!(allowed, ALLOWED_TRANSITIONS.len());
    }

    #[test]
    fn sources_drive_the_sql_guards() {
        use Status::*;
        assert_eq!(Status::sources_of(Running), vec![Pending, Failed, Running]);
        assert_eq!(Status::sources_of(Cancelled), vec![Pending, Failed]);
        assert_eq!(Status::sources_of(Pending), vec![Running, Dead]);
        assert_eq!(LifecycleEvent::Cancel.applies_from(), vec![Pending, Failed]);
        assert_eq!(LifecycleEvent::Redrive.applies_from(), vec![Dead]);
    }

    fn state(status: Status, attempts: u32, max: u32) -> Lifecycle {
        Lifecycle {
            status,
            attempts,
            max_attempts: max,
        }
    }

    const CLAIM_DUE: LifecycleEvent = LifecycleEvent::Claim {
        due: true,
        lease_expired: false,
    };

    #[test]
    fn event_table() {
        use LifecycleEvent as E;
        use Status::*;
        let expired = E::Claim {
            due: true,
            lease_expired: true,
        };
        let not_due = E::Claim {
            due: false,
            lease_expired: false,
        };
        let cases: Vec<(Lifecycle, LifecycleEvent, Option<Lifecycle>)> = vec![
            (state(Pending, 0, 5), CLAIM_DUE, Some(state(Running, 1, 5))),
            (state(Pending, 0, 5), not_due, None),
            (state(Failed, 2, 5), CLAIM_DUE, Some(state(Running, 3, 5))),
            (state(Failed, 2, 5), not_due, None),
            (state(Running, 1, 5), CLAIM_DUE, None),
            (state(Running, 1, 5), expired, Some(state(Running, 2, 5))),
            (state(Running, 5, 5), expired, None),
            (
                state(Running, 1, 5),
                E::Succeed,
                Some(state(Succeeded, 1, 5)),
            ),
            (
                state(Running, 1, 5),
                E::Fail { retryable: true },
                Some(state(Failed, 1, 5)),
            ),
            (
                state(Running, 5, 5),
                E::Fail { retryable: true },
                Some(state(Dead, 5, 5)),
            ),
            (
                state(Running, 1, 5),
                E::Fail { retryable: false },
                Some(state(Dead, 1, 5)),
            ),
            (
                state(Running, 1, 5),
                E::LeaseExpired,
                Some(state(Failed, 1, 5)),
            ),
            (
                state(Running, 5, 5),
                E::LeaseExpired,
                Some(state(Dead, 5, 5)),
            ),
            (
                state(Pending, 0, 5),
                E::Cancel,
                Some(state(Cancelled, 0, 5)),
            ),
            (state(Failed, 1, 5), E::Cancel, Some(state(Cancelled, 1, 5))),
            (state(Running, 1, 5), E::Cancel, None),
            (state(Succeeded, 1, 5), E::Cancel, None),
            (state(Dead, 5, 5), E::Cancel, None),
            (state(Cancelled, 0, 5), E::Cancel, None),
            (state(Dead, 5, 5), E::Redrive, Some(state(Pending, 0, 5))),
            (state(Failed, 1, 5), E::Redrive, None),
            (state(Succeeded, 1, 5), E::Redrive, None),
            (state(Pending, 0, 5), E::Succeed, None),
            (state(Failed, 1, 5), E::Fail { retryable: true }, None),
            (state(Succeeded, 1, 5), CLAIM_DUE, None),
            (state(Cancelled, 0, 5), CLAIM_DUE, None),
            (state(Dead, 1, 5), CLAIM_DUE, None),
            (
                state(Running, 1, 1),
                E::Release {
                    claimed_from: Pending,
                },
                Some(state(Pending, 0, 1)),
            ),
            (
                state(Running, 3, 5),
                E::Release {
                    claimed_from: Failed,
                },
                Some(state(Failed, 2, 5)),
            ),
            (
                state(Running, 3, 5),
                E::Release {
                    claimed_from: Running,
                },
                Some(state(Failed, 2, 5)),
            ),
            (
                state(Pending, 0, 5),
                E::Release {
                    claimed_from: Pending,
                },
                None,
            ),
            (
                state(Succeeded, 1, 5),
                E::Release {
                    claimed_from: Pending,
                },
                None,
            ),
        ];
        for (from, event, want) in cases {
            let got = from.apply(event);
            match want {
                Some(want) => assert_eq!(got, Ok(want), "{from:?} + {event:?}"),
                None => assert!(
                    got.is_err(),
                    "{from:?} + {event:?} should be refused, got {got:?}"
                ),
            }
        }
    }

    #[test]
    fn refusal_says_why() {
        let err = state(Status::Succeeded, 1, 5)
            .apply(LifecycleEvent::Cancel)
            .unwrap_err();
        assert_eq!(err.to_string(), "cannot cancel a succeeded task");
    }

    fn any_event() -> impl Strategy<Value = LifecycleEvent> {
        prop_oneof![
            (any::<bool>(), any::<bool>())
                .prop_map(|(due, lease_expired)| LifecycleEvent::Claim { due, lease_expired }),
            Just(LifecycleEvent::Succeed),
            any::<bool>().prop_map(|retryable| LifecycleEvent::Fail { retryable }),
            Just(LifecycleEvent::LeaseExpired),
            Just(LifecycleEvent::Cancel),
            Just(LifecycleEvent::Redrive),
            prop_oneof![
                Just(Status::Pending),
                Just(Status::Failed),
                Just(Status::Running)
            ]
            .prop_map(|claimed_from| LifecycleEvent::Release { claimed_from }),
        ]
    }

    proptest! {
        /// Random event sequences never reach a state the table forbids, never exceed the
        /// attempt budget, and never lose an attempt: a claim adds one, a release of a claim
        /// never started gives it back, and only a redrive resets the count.
        #[test]
        fn random_event_sequences_respect_the_table(
            max in 1u32..=20,
            events in proptest::collection::vec(any_event(), 0..200),
        ) {
            let mut current = Lifecycle::new(max);
            let mut claims_since_redrive = 0u32;
            for event in events {
                match current.apply(event) {
                    Ok(next) => {
                        prop_assert!(Status::can_transition(current.status, next.status),
                            "{:?} -> {:?} via {:?}", current.status, next.status, event);
                        prop_assert!(next.attempts <= next.max_attempts);
                        prop_assert_eq!(next.max_attempts, max);
                        match event {
                            LifecycleEvent::Claim { .. } => {
                                prop_assert_eq!(next.attempts, current.attempts + 1);
                                claims_since_redrive += 1;
                            }
                            LifecycleEvent::Redrive => {
                                prop_assert_eq!(next.attempts, 0);
                                claims_since_redrive = 0;
                            }
                            LifecycleEvent::Release { .. } => {
                                prop_assert_eq!(next.attempts + 1, current.attempts);
                                claims_since_redrive -= 1;
                            }
                            _ => prop_assert_eq!(next.attempts, current.attempts),
                        }
                        current = next;
                    }
                    Err(err) => prop_assert_eq!(err.from, current.status),
                }
                prop_assert_eq!(current.attempts, claims_since_redrive);
            }
        }
    }
}
