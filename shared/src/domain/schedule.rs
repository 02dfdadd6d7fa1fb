//! Schedules: a five-field cron expression or `rate(N unit)` in an IANA time zone, an optional
//! window, a missed-run policy and the task each fire creates; and the fire times they give.
//!
//! - A cron expression has five fields (minute, hour, day of month, month, day of week) of
//!   numbers, names (`JAN`, `MON`), `*`, lists, ranges and steps; a range may wrap around
//!   (`22-2` is 22, 23, 0, 1, 2). Day of month and day of week both restricted match either.
//! - A cron expression is read on the zone's wall clock. A time the clock skips (spring forward)
//!   fires once, at the first instant after the gap, when the expression names one minute and
//!   one hour (`30 2 * * *` fires at 03:00 that day); an expression with `*`, a list, a range or
//!   a step in those fields fires only at the times that exist. A time that happens twice (fall
//!   back) fires once, at its first occurrence, for one minute and one hour; other expressions
//!   fire on both passes (an hourly expression keeps firing every real hour).
//! - `rate(N unit)` fires at fixed intervals of real time, first at `starts_at`, else one
//!   interval after the schedule was created (each rounded up to a whole second); a `starts_at`
//!   in the past keeps its grid, and the first fire is the first one after the creation.
//! - The window: fires at or after `starts_at` and before `ends_at`.
//! - Missed fires (the scheduler did not run when they were due): [`MissedPolicy`].

use std::fmt;

use chrono::{DateTime, Datelike, SecondsFormat, SubsecRound, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds};
use croner::Cron;
use serde_json::Value;

use super::ids::{CorrelationId, ScheduleId, Tenant};
use super::kind::TaskKind;
use super::submission::{
    request_hash, NewTask, Source, Submission, SubmissionRules, RUN_AFTER_EARLIEST,
    RUN_AFTER_LATEST,
};
use super::validation::{FieldError, ValidationErrors};

/// The longest schedule name, in characters.
pub const SCHEDULE_NAME_MAX: usize = 128;
/// A schedule name: 1-128 characters, none of them a control character.
pub const SCHEDULE_NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f]+$";
/// The longest expression, in characters.
pub const EXPRESSION_MAX: usize = 256;
/// The largest N of `rate(N unit)`.
pub const RATE_MAX: u32 = 9999;
/// The most missed fires `catch_up` creates after a gap.
pub const CATCH_UP_LIMIT: u32 = 1000;
/// The most run times a preview lists.
pub const PREVIEW_LIMIT: usize = 50;
/// How late a fire may be under the `skip` policy and still be created.
pub const SKIP_GRACE: TimeDelta = TimeDelta::minutes(5);

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field of a cron expression: its values and, for months and weekdays, their names.
struct CronField {
    name: &'static str,
    min: u16,
    max: u16,
    names: &'static [&'static str],
    /// The value of the first name.
    first_name: u16,
}

const CRON_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        first_name: 0,
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        first_name: 0,
    },
    CronField {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
        first_name: 0,
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        first_name: 1,
    },
    CronField {
        name: "day-of-week",
        min: 0,
        max: 7,
        names: &WEEKDAYS,
        first_name: 0,
    },
];

impl CronField {
    /// A number of one or two digits within the field's range, or one of its names (any case).
    fn value(&self, token: &str) -> Result<u16, String> {
        if let Some(i) = self
            .names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(token))
        {
            return Ok(self.first_name + i as u16);
        }
        let digits = (1..=2).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit());
        token
            .parse::<u16>()
            .ok()
            .filter(|v| digits && (self.min..=self.max).contains(v))
            .ok_or_else(|| {
                let names = match self.names.first().zip(self.names.last()) {
                    Some((first, last)) => format!(" or {first}-{last}"),
                    None => String::new(),
                };
                format!(
                    "the {} field takes {}-{}{names}, not {token:?}",
                    self.name, self.min, self.max
                )
            })
    }

    /// A step: 1-99, without a leading zero.
    fn step(token: &str) -> Result<u16, String> {
        let shape = (1..=2).contains(&token.len())
            && !token.starts_with('0')
            && token.bytes().all(|b| b.is_ascii_digit());
        token
            .parse()
            .ok()
            .filter(|_| shape)
            .ok_or_else(|| format!("a step is 1-99, not {token:?}"))
    }

    /// Checks `*`, or a list of `V`, `V-V`, `V-V/S` and `*/S` items, and returns the field as
    /// croner reads it: a range that wraps around (`22-2`: 22, 23, 0, 1, 2) written out as the
    /// list of its values, every other item as it is.
    fn normalize(&self, field: &str) -> Result<String, String> {
        if field == "*" {
            return Ok(field.to_owned());
        }
        let mut items = Vec::new();
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => (range, Some(Self::step(step)?)),
                None => (item, None),
            };
            if range == "*" {
                if step.is_none() {
                    return Err(format!(
                        "`*` stands alone in the {} field, not in a list",
                        self.name
                    ));
                }
                items.push(item.to_owned());
                continue;
            }
            match range.split_once('-') {
                Some((from, to)) => {
                    let (from, to) = (self.value(from)?, self.value(to)?);
                    if from <= to {
                        items.push(item.to_owned());
                    } else {
                        let span = self.max - self.min + 1;
                        let len = (self.max - from + 1) + (to - self.min + 1);
                        let values = (0..len).step_by(usize::from(step.unwrap_or(1))).map(|k| {
                            let v = from + k;
                            (if v > self.max { v - span } else { v }).to_string()
                        });
                        items.extend(values);
                    }
                }
                None => {
                    self.value(range)?;
                    if step.is_some() {
                        return Err(format!(
                            "a step follows `*` or a range (*/15, 0-30/5), not {item:?}"
                        ));
                    }
                    items.push(item.to_owned());
                }
            }
        }
        Ok(items.join(","))
    }

    /// The field's grammar as a regular expression.
    fn pattern(&self) -> String {
        let number = match (self.min, self.max) {
            (0, 59) => "[0-5]?[0-9]",
            (0, 23) => "[01]?[0-9]|2[0-3]",
            (1, 31) => "0?[1-9]|[12][0-9]|3[01]",
            (1, 12) => "0?[1-9]|1[0-2]",
            (0, 7) => "0?[0-7]",
            _ => unreachable!("a field of the five"),
        };
        let names: String = self
            .names
            .iter()
            .map(|n| {
                let any_case: String = n
                    .chars()
                    .map(|c| format!("[{}{}]", c, c.to_ascii_lowercase()))
                    .collect();
                format!("|{any_case}")
            })
            .collect();
        let value = format!("(?:{number}{names})");
        let step = "[1-9][0-9]?";
        let item = format!(r"(?:\*/{step}|{value}(?:-{value}(?:/{step})?)?)");
        format!(r"(?:\*|{item}(?:,{item})*)")
    }
}

/// The units of `rate(N unit)`.
const RATE_UNITS: [(&str, i64); 6] = [
    ("minute", 60),
    ("minutes", 60),
    ("hour", 3600),
    ("hours", 3600),
    ("day", 86_400),
    ("days", 86_400),
];

/// [`Expression::parse`] as a regular expression on the text (the OpenAPI document's pattern);
/// beyond it, a cron expression must match some date.
pub fn expression_pattern() -> String {
    let fields: Vec<String> = CRON_FIELDS.iter().map(CronField::pattern).collect();
    format!(
        r"^(?:{}|rate\([1-9][0-9]{{0,3}} (?:minutes?|hours?|days?)\))$",
        fields.join(" ")
    )
}

/// When a schedule fires: a cron expression or a rate.
#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// Five fields: minute, hour, day of month, month, day of week.
    Cron { text: String, cron: Box<Cron> },
    /// `rate(N unit)`: every `every`.
    Rate { text: String, every: TimeDelta },
}

impl Expression {
    /// # Errors
    /// A [`FieldError`] at `/expression` saying what is wrong.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let invalid = |why: String| FieldError::new("/expression", why);
        if raw.chars().count() > EXPRESSION_MAX {
            return Err(invalid(format!(
                "must be at most {EXPRESSION_MAX} characters"
            )));
        }
        if let Some(rest) = raw.strip_prefix("rate(") {
            return Self::rate(raw, rest).ok_or_else(|| {
                invalid(format!(
                    "must be rate(N minute|minutes|hour|hours|day|days) with N from 1 to {RATE_MAX}"
                ))
            });
        }
        let fields: Vec<&str> = raw.split(' ').collect();
        if fields.len() != 5 {
            return Err(invalid(
                "must be five cron fields separated by single spaces (minute hour day-of-month month day-of-week), or rate(N unit)".into(),
            ));
        }
        let normalized = CRON_FIELDS
            .iter()
            .zip(&fields)
            .map(|(spec, field)| spec.normalize(field))
            .collect::<Result<Vec<_>, _>>()
            .map_err(invalid)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(&normalized.join(" "))
            .map_err(|e| invalid(format!("is not a valid cron expression: {e}")))?;
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        if cron.find_next_occurrence(&reference, false).is_err() {
            return Err(invalid("never matches a date (such as 30 February)".into()));
        }
        Ok(Self::Cron {
            text: raw.to_owned(),
            cron: Box::new(cron),
        })
    }

    fn rate(raw: &str, rest: &str) -> Option<Self> {
        let (n, unit) = rest.strip_suffix(')')?.split_once(' ')?;
        let shape = (1..=4).contains(&n.len())
            && !n.starts_with('0')
            && n.bytes().all(|b| b.is_ascii_digit());
        let n: i64 = n.parse().ok().filter(|_| shape)?;
        let (_, seconds) = RATE_UNITS.iter().find(|(name, _)| *name == unit)?;
        Some(Self::Rate {
            text: raw.to_owned(),
            every: TimeDelta::seconds(n * seconds),
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Cron { text, .. } | Self::Rate { text, .. } => text,
        }
    }

    /// Whether a cron expression names one minute and one hour: such an expression fires once
    /// on a day whose clock skips or repeats its time (see the module's documentation).
    pub fn is_fixed_time(&self) -> bool {
        matches!(self, Self::Cron { cron, .. }
            if cron.determine_job_type() == croner::JobType::FixedTime)
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An IANA time zone (`Europe/Berlin`, `UTC`), by its exact name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timezone(Tz);

impl Timezone {
    /// # Errors
    /// A [`FieldError`] at `/timezone`.
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        raw.parse::<Tz>().map(Self).map_err(|_| {
            FieldError::new(
                "/timezone",
                "must be an IANA time zone name such as Europe/Berlin, America/New_York or UTC",
            )
        })
    }

    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// Every name [`Self::parse`] accepts.
    pub fn names() -> impl Iterator<Item = &'static str> {
        chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
    }

    pub fn tz(&self) -> Tz {
        self.0
    }
}

/// What to do with the fires that were due while the scheduler did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedPolicy {
    /// Create only the latest due fire, and only when it is at most [`SKIP_GRACE`] late.
    Skip,
    /// Create the `max` most recent due fires, oldest first, however late.
    CatchUp { max: u32 },
}

impl MissedPolicy {
    /// # Errors
    /// A [`FieldError`] at `/missed/max`.
    pub fn check(&self) -> Result<(), FieldError> {
        match self {
            Self::CatchUp { max } if !(1..=CATCH_UP_LIMIT).contains(max) => Err(FieldError::new(
                "/missed/max",
                format!("must be from 1 to {CATCH_UP_LIMIT}"),
            )),
            _ => Ok(()),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::CatchUp { .. } => "catch_up",
        }
    }
}

/// When a schedule fires: its expression in its zone, within its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub expression: Expression,
    pub timezone: Timezone,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// A rate's first fire: `starts_at` rounded up to a whole second, else one interval after
    /// the creation time rounded up to a whole second.
    rate_start: DateTime<Utc>,
}

/// `t` rounded up to a whole second.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let whole = t.trunc_subsecs(0);
    if whole == t {
        t
    } else {
        whole + TimeDelta::seconds(1)
    }
}

impl Timing {
    pub fn new(
        expression: Expression,
        timezone: Timezone,
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
    ) -> Self {
        let rate_start = match (&expression, starts_at) {
            (_, Some(start)) => ceil_second(start),
            (Expression::Rate { every, .. }, None) => ceil_second(created_at) + *every,
            (Expression::Cron { .. }, None) => ceil_second(created_at),
        };
        Self {
            expression,
            timezone,
            starts_at,
            ends_at,
            rate_start,
        }
    }

    fn before_end(&self, t: DateTime<Utc>) -> bool {
        self.ends_at.is_none_or(|end| t < end)
    }

    /// The first fire after `t` (strictly), within the window; `None` once the window ended.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let next = match &self.expression {
            Expression::Rate { every, .. } => {
                if t < self.rate_start {
                    Some(self.rate_start)
                } else {
                    let k = (t - self.rate_start).num_seconds() / every.num_seconds() + 1;
                    self.rate_start
                        .checked_add_signed(*every * i32::try_from(k).ok()?)
                }
            }
            Expression::Cron { cron, .. } => {
                let tz = self.timezone.tz();
                let from_start = self.starts_at.filter(|s| *s > t);
                let (bound, inclusive) = match from_start {
                    Some(start) => (start, true),
                    None => (t, false),
                };
                let mut at = bound.with_timezone(&tz);
                let mut inclusive = inclusive;
                loop {
                    let found = cron.find_next_occurrence(&at, inclusive).ok()?;
                    let found_utc = found.with_timezone(&Utc);
                    // A bound with a fraction of a second can match its own whole second.
                    if found_utc > t && from_start.is_none_or(|s| found_utc >= s) {
                        break Some(found_utc);
                    }
                    at = found;
                    inclusive = false;
                }
            }
        };
        next.filter(|n| self.before_end(*n))
    }

    /// The last fire at or before `t`, ignoring the window's end; `None` before the first.
    fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let latest = match &self.expression {
            Expression::Rate { every, .. } => {
                if t < self.rate_start {
                    return None;
                }
                let k = (t - self.rate_start).num_seconds() / every.num_seconds();
                self.rate_start
                    .checked_add_signed(*every * i32::try_from(k).ok()?)?
            }
            Expression::Cron { cron, .. } => cron
                .find_previous_occurrence(&t.with_timezone(&self.timezone.tz()), true)
                .ok()?
                .with_timezone(&Utc),
        };
        (self.starts_at.is_none_or(|s| latest >= s) && latest <= t).then_some(latest)
    }

    /// The fire before `fire` (strictly).
    fn previous(&self, fire: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.latest_at_or_before(fire - TimeDelta::microseconds(1))
    }

    /// The next `n` fires after `now` (at most [`PREVIEW_LIMIT`]).
    pub fn preview(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::new();
        let mut at = now;
        while fires.len() < n.min(PREVIEW_LIMIT) {
            let Some(next) = self.next_after(at) else {
                break;
            };
            fires.push(next);
            at = next;
        }
        fires
    }
}

/// The task each fire of a schedule creates.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTemplate {
    pub kind: TaskKind,
    pub payload: Value,
    pub max_attempts: u32,
}

/// A task template as a client sends it, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskTemplateInput {
    pub kind: String,
    pub payload: Value,
    pub max_attempts: Option<u32>,
}

impl TaskTemplateInput {
    /// Validated as a task submission is; errors point below `/task`.
    fn validate(
        self,
        tenant: &Tenant,
        rules: &SubmissionRules,
        errors: &mut Vec<FieldError>,
    ) -> Option<TaskTemplate> {
        let submission = Submission {
            kind: self.kind,
            payload: self.payload,
            idempotency_key: None,
            run_after: None,
            max_attempts: self.max_attempts,
            priority: super::Priority::Normal,
        };
        match submission.validate(
            tenant.clone(),
            CorrelationId::generate(),
            Source::Api,
            rules,
        ) {
            Ok(task) => Some(TaskTemplate {
                kind: task.kind,
                payload: task.payload,
                max_attempts: task.max_attempts,
            }),
            Err(e) => {
                errors.extend(e.0.into_iter().map(|mut f| {
                    f.pointer = format!("/task{}", f.pointer);
                    f
                }));
                None
            }
        }
    }
}

/// A tenant's schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub tenant: Tenant,
    pub name: String,
    pub timing: Timing,
    pub template: TaskTemplate,
    pub missed: MissedPolicy,
    pub paused: bool,
    /// The earliest fire not yet created; `None` once the window ended.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The latest fire created.
    pub last_fire_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change of the definition (not by the scheduler's bookkeeping).
    pub version: i64,
}

/// A schedule as a client creates it, not yet validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleInput {
    pub name: String,
    pub expression: String,
    pub timezone: String,
    pub task: TaskTemplateInput,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub missed: MissedPolicy,
    pub paused: bool,
}

/// A change to a schedule: each field given replaces the schedule's; `starts_at` and `ends_at`
/// may be cleared (`Some(None)`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulePatch {
    pub name: Option<String>,
    pub expression: Option<String>,
    pub timezone: Option<String>,
    pub task: Option<TaskTemplateInput>,
    pub starts_at: Option<Option<DateTime<Utc>>>,
    pub ends_at: Option<Option<DateTime<Utc>>>,
    pub missed: Option<MissedPolicy>,
    pub paused: Option<bool>,
}

/// A schedule after a [`SchedulePatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct Patched {
    pub schedule: Schedule,
    /// Its timing changed or it was resumed: `next_run_at` was computed anew from now (fires
    /// missed while paused are not created). Otherwise the stored `next_run_at` stands.
    pub rescheduled: bool,
}

/// What one evaluation of a due schedule decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The fires to create, oldest first.
    pub fires: Vec<DateTime<Utc>>,
    /// Whether due fires were dropped by the missed-run policy.
    pub dropped: bool,
    /// The first fire after now; `None` once the window ended.
    pub next_run_at: Option<DateTime<Utc>>,
}

fn check_name(name: &str) -> Result<(), FieldError> {
    let count = name.chars().count();
    if (1..=SCHEDULE_NAME_MAX).contains(&count) && !name.chars().any(|c| c.is_ascii_control()) {
        Ok(())
    } else {
        Err(FieldError::new(
            "/name",
            format!("must be 1-{SCHEDULE_NAME_MAX} characters, without control characters"),
        ))
    }
}

/// The bounds of `run_after` hold for the window too.
fn check_instant(t: Option<DateTime<Utc>>, pointer: &str) -> Result<(), FieldError> {
    match t {
        Some(t) if !(1970..=9999).contains(&t.year()) => Err(FieldError::new(
            pointer,
            format!("must be between {RUN_AFTER_EARLIEST} and {RUN_AFTER_LATEST}"),
        )),
        _ => Ok(()),
    }
}

/// The parts every schedule change validates, collecting every error.
struct Parts {
    name: String,
    expression: Result<Expression, FieldError>,
    timezone: Result<Timezone, FieldError>,
    template: Option<TaskTemplate>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    /// Where to point at a window whose end is not after its start.
    window_pointer: &'static str,
    missed: MissedPolicy,
    errors: Vec<FieldError>,
}

impl Parts {
    fn finish(
        mut self,
        created_at: DateTime<Utc>,
    ) -> Result<(String, Timing, TaskTemplate, MissedPolicy), ValidationErrors> {
        if let Err(e) = check_name(&self.name) {
            self.errors.insert(0, e);
        }
        let mut errors = self.errors;
        let expression = self.expression.map_err(|e| errors.push(e)).ok();
        let timezone = self.timezone.map_err(|e| errors.push(e)).ok();
        for (t, pointer) in [(self.starts_at, "/starts_at"), (self.ends_at, "/ends_at")] {
            if let Err(e) = check_instant(t, pointer) {
                errors.push(e);
            }
        }
        if let (Some(start), Some(end)) = (self.starts_at, self.ends_at) {
            if end <= start {
                errors.push(FieldError::new(
                    self.window_pointer,
                    "ends_at must be after starts_at",
                ));
            }
        }
        if let Err(e) = self.missed.check() {
            errors.push(e);
        }
        match (expression, timezone, self.template) {
            (Some(expression), Some(timezone), Some(template)) if errors.is_empty() => {
                let timing = Timing::new(
                    expression,
                    timezone,
                    self.starts_at,
                    self.ends_at,
                    created_at,
                );
                Ok((self.name, timing, template, self.missed))
            }
            _ => Err(ValidationErrors(errors)),
        }
    }
}

impl ScheduleInput {
    /// Validates every field, collecting all errors, into a new schedule created at `now` whose
    /// first run is the first fire after `now`.
    ///
    /// # Errors
    /// Each invalid field, as a JSON Pointer into the request.
    pub fn validate(
        self,
        tenant: Tenant,
        rules: &SubmissionRules,
        now: DateTime<Utc>,
    ) -> Result<Schedule, ValidationErrors> {
        let mut errors = Vec::new();
        let template = self.task.validate(&tenant, rules, &mut errors);
        let parts = Parts {
            name: self.name,
            expression: Expression::parse(&self.expression),
            timezone: Timezone::parse(&self.timezone),
            template,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            window_pointer: "/ends_at",
            missed: self.missed,
            errors,
        };
        // The database keeps microseconds: the rate anchor must be the same read back.
        let created_at = now.trunc_subsecs(6);
        let (name, timing, template, missed) = parts.finish(created_at)?;
        Ok(Schedule {
            id: ScheduleId::new(),
            tenant,
            name,
            next_run_at: timing.next_after(now),
            timing,
            template,
            missed,
            paused: self.paused,
            last_fire_at: None,
            created_at,
            updated_at: created_at,
            version: 1,
        })
    }
}

impl Schedule {
    /// The schedule with `patch` applied at `now`, validated whole.
    ///
    /// # Errors
    /// Each invalid field, as a JSON Pointer into the request.
    pub fn patch(
        &self,
        patch: SchedulePatch,
        rules: &SubmissionRules,
        now: DateTime<Utc>,
    ) -> Result<Patched, ValidationErrors> {
        let mut errors = Vec::new();
        let template = match patch.task {
            Some(input) => input.validate(&self.tenant, rules, &mut errors),
            None => Some(self.template.clone()),
        };
        let timing = &self.timing;
        let parts = Parts {
            name: patch.name.unwrap_or_else(|| self.name.clone()),
            expression: match &patch.expression {
                Some(raw) => Expression::parse(raw),
                None => Ok(timing.expression.clone()),
            },
            timezone: match &patch.timezone {
                Some(raw) => Timezone::parse(raw),
                None => Ok(timing.timezone),
            },
            template,
            starts_at: patch.starts_at.unwrap_or(timing.starts_at),
            ends_at: patch.ends_at.unwrap_or(timing.ends_at),
            window_pointer: if patch.ends_at.is_some() || patch.starts_at.is_none() {
                "/ends_at"
            } else {
                "/starts_at"
            },
            missed: patch.missed.unwrap_or(self.missed),
            errors,
        };
        let (name, new_timing, template, missed) = parts.finish(self.created_at)?;
        let paused = patch.paused.unwrap_or(self.paused);
        let rescheduled = new_timing.expression.as_str() != timing.expression.as_str()
            || new_timing.timezone != timing.timezone
            || new_timing.starts_at != timing.starts_at
            || new_timing.ends_at != timing.ends_at
            || (self.paused && !paused);
        let next_run_at = if rescheduled {
            new_timing.next_after(now)
        } else {
            self.next_run_at
        };
        Ok(Patched {
            schedule: Self {
                name,
                timing: new_timing,
                template,
                missed,
                paused,
                next_run_at,
                ..self.clone()
            },
            rescheduled,
        })
    }

    /// The next run, as a client sees it: none while paused.
    pub fn next_run(&self) -> Option<DateTime<Utc>> {
        self.next_run_at.filter(|_| !self.paused)
    }

    /// The fires due at `now` since `next_run_at` that the missed-run policy creates, and the
    /// next run after them.
    pub fn due(&self, now: DateTime<Utc>) -> Run {
        let Some(from) = self.next_run_at.filter(|from| *from <= now) else {
            return Run {
                fires: Vec::new(),
                dropped: false,
                next_run_at: self.next_run_at,
            };
        };
        let timing = &self.timing;
        // Fires are before `ends_at`: the latest due one is at or before the instant before it.
        let upper = match timing.ends_at {
            Some(end) if end <= now => end - TimeDelta::microseconds(1),
            _ => now,
        };
        let wanted = match self.missed {
            MissedPolicy::Skip => 1,
            MissedPolicy::CatchUp { max } => max as usize,
        };
        // Back from the latest due fire, a bounded walk to where the wanted fires begin; then
        // forward from there with `next_after`, the same walk that gives the next fire. (Around
        // a fall-back the expression's backward and forward searches need not agree on the
        // repeated hour's fires: the forward one is what the schedule runs by.)
        let mut back = Vec::new();
        let mut at = timing.latest_at_or_before(upper).filter(|f| *f >= from);
        while let Some(fire) = at {
            back.push(fire);
            if back.len() > wanted {
                break;
            }
            at = timing.previous(fire).filter(|f| *f >= from);
        }
        let mut forward = Vec::new();
        let mut at = back.get(wanted).copied().unwrap_or(from) - TimeDelta::microseconds(1);
        while let Some(fire) = timing.next_after(at).filter(|f| *f <= upper) {
            forward.push(fire);
            at = fire;
        }
        let dropped_before = forward.len().saturating_sub(wanted);
        let mut dropped = dropped_before > 0;
        let mut due: Vec<_> = forward.split_off(dropped_before);
        due.reverse();
        if self.missed == MissedPolicy::Skip && due.first().is_some_and(|f| now - *f > SKIP_GRACE) {
            due.clear();
            dropped = true;
        }
        due.reverse();
        Run {
            fires: due,
            dropped,
            next_run_at: timing.next_after(now),
        }
    }

    /// The idempotency key of the task of the fire at `at`: `schedule:{id}:{RFC 3339, UTC}`.
    pub fn fire_key(&self, at: DateTime<Utc>) -> String {
        format!(
            "schedule:{}:{}",
            self.id,
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    /// The task of the fire at `at`, due then; the same fire always has the same key and, while
    /// the template is the same, the same request hash.
    pub fn fire(&self, at: DateTime<Utc>) -> NewTask {
        let template = &self.template;
        NewTask {
            id: super::ids::TaskId::new(),
            tenant: self.tenant.clone(),
            kind: template.kind,
            payload: template.payload.clone(),
            max_attempts: template.max_attempts,
            run_after: Some(at),
            idempotency_key: Some(self.fire_key(at)),
            request_hash: request_hash(
                template.kind,
                &template.payload,
                template.max_attempts,
                Some(at),
            ),
            correlation_id: CorrelationId::generate(),
            source: Source::Schedule {
                schedule_id: self.id,
                fire_time: at,
            },
            priority: super::Priority::Normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;
    use proptest::prelude::*;
    use serde_json::json;

    /// Whether `fire` matches the expression on the zone's wall clock.
    fn matches(timing: &Timing, fire: DateTime<Utc>) -> bool {
        match &timing.expression {
            Expression::Cron { cron, .. } => {
                let local = fire.with_timezone(&timing.timezone.tz());
                local.second() == 0 && cron.is_time_matching(&local).unwrap_or(false)
            }
            Expression::Rate { every, .. } => {
                (fire - timing.rate_start).num_seconds() % every.num_seconds() == 0
            }
        }
    }

    /// Whether `t` is the first instant after a gap in `tz`'s clock: the wall clock moved more
    /// than the second of real time before it.
    fn after_gap(tz: Tz, t: DateTime<Utc>) -> bool {
        let local = |at: DateTime<Utc>| at.with_timezone(&tz).naive_local();
        local(t) - local(t - TimeDelta::seconds(1)) > TimeDelta::seconds(1)
    }

    fn utc(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    fn timing(expression: &str, zone: &str) -> Timing {
        Timing::new(
            Expression::parse(expression).unwrap(),
            Timezone::parse(zone).unwrap(),
            None,
            None,
            utc("2020-01-01T00:00:00Z"),
        )
    }

    fn input(expression: &str) -> ScheduleInput {
        ScheduleInput {
            name: "nightly".into(),
            expression: expression.into(),
            timezone: "Europe/Berlin".into(),
            task: TaskTemplateInput {
                kind: "noop".into(),
                payload: json!({}),
                max_attempts: None,
            },
            starts_at: None,
            ends_at: None,
            missed: MissedPolicy::Skip,
            paused: false,
        }
    }

    fn schedule(expression: &str, now: &str) -> Schedule {
        input(expression)
            .validate(
                Tenant::parse("demo").unwrap(),
                &SubmissionRules::default(),
                utc(now),
            )
            .unwrap()
    }

    fn pointers(result: Result<Schedule, ValidationErrors>) -> Vec<String> {
        result
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.pointer)
            .collect()
    }

    fn fires(timing: &Timing, after: &str, n: usize) -> Vec<String> {
        timing
            .preview(utc(after), n)
            .iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .collect()
    }

    #[test]
    fn valid_expressions() {
        for ok in [
            "* * * * *",
            "0 0 * * *",
            "*/15 8-18 * * MON-FRI",
            "0,30 9-17/2 1,15 jan-Jun sun",
            "05 07 01 01 07",
            "59 23 31 12 0-7/2",
            "0 0 29 2 *",
            "rate(1 minute)",
            "rate(5 minutes)",
            "rate(9999 days)",
            "rate(1 hours)",
            "5-1 * * * *",
            "0 22-2 * * FRI-MON",
            "50-10/15 * 30-2 NOV-FEB *",
        ] {
            assert!(Expression::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn invalid_expressions_say_why_at_expression() {
        for (bad, says) in [
            ("", "five cron fields"),
            ("* * * *", "five cron fields"),
            ("* * * * * *", "five cron fields"),
            ("*  * * * *", "five cron fields"),
            ("* * * * * ", "five cron fields"),
            ("*,,5 * * * *", "minute field"),
            (" * * * * *", "five cron fields"),
            ("60 * * * *", "minute field takes 0-59"),
            ("* 24 * * *", "hour field"),
            ("* * 0 * *", "day-of-month field"),
            ("* * * 13 *", "month field takes 1-12 or JAN-DEC"),
            ("* * * * 8", "day-of-week field takes 0-7 or SUN-SAT"),
            ("* * * * MONDAY", "day-of-week field"),
            ("* * * JAN-FOO *", "month field"),
            ("*/0 * * * *", "step is 1-99"),
            ("*/100 * * * *", "step is 1-99"),
            ("*/05 * * * *", "step is 1-99"),
            ("5/10 * * * *", "a step follows"),
            ("*,5 * * * *", "stands alone"),
            ("1,,2 * * * *", "minute field"),
            ("001 * * * *", "minute field"),
            ("L * * * *", "minute field"),
            ("0 0 L * *", "day-of-month field"),
            ("0 0 ? * *", "day-of-month field"),
            ("0 0 * * 1#2", "day-of-week field"),
            ("@daily", "five cron fields"),
            ("0 0 30 2 *", "never matches"),
            ("0 0 31 4,6,9,11 *", "never matches"),
            ("rate(0 minutes)", "rate(N"),
            ("rate(10000 days)", "rate(N"),
            ("rate(5 weeks)", "rate(N"),
            ("rate(05 minutes)", "rate(N"),
            ("rate(5  minutes)", "rate(N"),
            ("rate(5 minutes", "rate(N"),
            ("rate(-5 minutes)", "rate(N"),
            ("RATE(5 minutes)", "five cron fields"),
        ] {
            let err = Expression::parse(bad).unwrap_err();
            assert_eq!(err.pointer, "/expression", "{bad}");
            assert!(err.message.contains(says), "{bad:?}: {}", err.message);
        }
        let long = format!("0 0 * * {}", "1,".repeat(130) + "1");
        assert!(Expression::parse(&long)
            .unwrap_err()
            .message
            .contains("at most 256"));
    }

    #[test]
    fn the_pattern_is_the_grammar() {
        let pattern = regex::Regex::new(&expression_pattern()).unwrap();
        for raw in [
            "* * * * *",
            "*/15 8-18 * * MON-FRI",
            "0,30 9-17/2 1,15 jan-Jun sun",
            "05 07 01 01 07",
            "rate(1 minute)",
            "rate(9999 days)",
        ] {
            assert!(pattern.is_match(raw), "{raw}");
        }
        // Everything the grammar refuses, the pattern refuses too (dates that never occur are
        // beyond a pattern).
        for raw in [
            "",
            "* * * *",
            "*  * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "*/100 * * * *",
            "5/10 * * * *",
            "*,5 * * * *",
            "0 0 L * *",
            "@daily",
            "rate(0 minutes)",
            "rate(10000 days)",
            "rate(5 weeks)",
            "* * * * MONDAY",
        ] {
            assert!(!pattern.is_match(raw), "{raw}");
            assert!(Expression::parse(raw).is_err(), "{raw}");
        }
        for (i, spec) in CRON_FIELDS.iter().enumerate() {
            let field = regex::Regex::new(&format!("^{}$", spec.pattern())).unwrap();
            let mut tokens: Vec<String> = (0..100).map(|n| n.to_string()).collect();
            tokens.extend((0..10).map(|n| format!("0{n}")));
            tokens.extend(
                [
                    "*", "", "-", "a", "000", "1-", "*/1", "*/99", "*/100", "*/0",
                ]
                .map(String::from),
            );
            tokens.extend(MONTHS.iter().chain(&WEEKDAYS).map(|n| n.to_lowercase()));
            for token in &tokens {
                for candidate in [
                    token.clone(),
                    format!("{token}-{token}"),
                    format!("1-{token}"),
                    format!("{token},5"),
                    format!("{token}/2"),
                ] {
                    let grammar = spec.normalize(&candidate);
                    assert_eq!(
                        field.is_match(&candidate),
                        grammar.is_ok(),
                        "field {i}: {candidate:?} {grammar:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_zone_name_parses() {
        let names: Vec<&str> = Timezone::names().collect();
        assert!(names.len() > 500);
        for name in names {
            assert_eq!(Timezone::parse(name).unwrap().name(), name);
        }
        for bad in [
            "",
            "europe/berlin",
            "Mars/Olympus",
            "CEST",
            "+01:00",
            "Europe/Berlin ",
        ] {
            assert_eq!(
                Timezone::parse(bad).unwrap_err().pointer,
                "/timezone",
                "{bad}"
            );
        }
    }

    #[test]
    fn cron_fires_on_the_zones_wall_clock() {
        let cases = [
            (
                "0 9 * * MON-FRI",
                "Europe/Berlin",
                "2026-06-05T10:00:00Z",
                vec!["2026-06-08T07:00:00Z", "2026-06-09T07:00:00Z"],
            ),
            (
                "0 9 * * MON-FRI",
                "Europe/Berlin",
                "2026-12-04T10:00:00Z",
                vec!["2026-12-07T08:00:00Z", "2026-12-08T08:00:00Z"],
            ),
            (
                "*/20 * * * *",
                "UTC",
                "2026-01-01T00:00:00Z",
                vec![
                    "2026-01-01T00:20:00Z",
                    "2026-01-01T00:40:00Z",
                    "2026-01-01T01:00:00Z",
                ],
            ),
            (
                "30 5 * * *",
                "Asia/Kolkata",
                "2026-01-01T00:00:00Z",
                vec!["2026-01-02T00:00:00Z"],
            ),
            // A range may wrap around: 22-2 is 22, 23, 0, 1, 2; FRI-MON is Friday to Monday.
            (
                "0 22-2 * * *",
                "UTC",
                "2026-01-01T20:00:00Z",
                vec![
                    "2026-01-01T22:00:00Z",
                    "2026-01-01T23:00:00Z",
                    "2026-01-02T00:00:00Z",
                    "2026-01-02T01:00:00Z",
                    "2026-01-02T02:00:00Z",
                    "2026-01-02T22:00:00Z",
                ],
            ),
            (
                "0 12 * * FRI-MON",
                "UTC",
                "2026-01-01T00:00:00Z",
                vec![
                    "2026-01-02T12:00:00Z",
                    "2026-01-03T12:00:00Z",
                    "2026-01-04T12:00:00Z",
                    "2026-01-05T12:00:00Z",
                    "2026-01-09T12:00:00Z",
                ],
            ),
            (
                "50-10/15 0 * * *",
                "UTC",
                "2026-01-01T00:00:00Z",
                vec![
                    "2026-01-01T00:05:00Z",
                    "2026-01-01T00:50:00Z",
                    "2026-01-02T00:05:00Z",
                ],
            ),
            (
                "0 0 13 * 5",
                "UTC",
                "2026-02-10T00:00:00Z",
                vec![
                    "2026-02-13T00:00:00Z",
                    "2026-02-20T00:00:00Z",
                    "2026-02-27T00:00:00Z",
                    "2026-03-06T00:00:00Z",
                    "2026-03-13T00:00:00Z",
                ],
            ),
        ];
        for (expression, zone, after, expected) in cases {
            assert_eq!(
                fires(&timing(expression, zone), after, expected.len()),
                expected,
                "{expression} in {zone}"
            );
        }
    }

    /// Spring forward: Europe/Berlin 2026-03-29 02:00 → 03:00, America/New_York 2026-03-08
    /// 02:00 → 03:00. Fall back: Europe/Berlin 2026-10-25 03:00 → 02:00, America/New_York
    /// 2026-11-01 02:00 → 01:00.
    #[test]
    fn daylight_saving_days() {
        let cases = [
            // A skipped time fires once, at the first instant after the gap.
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2026-03-27T12:00:00Z",
                vec![
                    "2026-03-28T01:30:00Z",
                    "2026-03-29T01:00:00Z",
                    "2026-03-30T00:30:00Z",
                ],
            ),
            (
                "30 2 * * *",
                "America/New_York",
                "2026-03-06T12:00:00Z",
                vec![
                    "2026-03-07T07:30:00Z",
                    "2026-03-08T07:00:00Z",
                    "2026-03-09T06:30:00Z",
                ],
            ),
            // A repeated time fires once, at its first occurrence.
            (
                "30 1 * * *",
                "America/New_York",
                "2026-10-31T12:00:00Z",
                vec!["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
            ),
            (
                "30 2 * * *",
                "Europe/Berlin",
                "2026-10-24T12:00:00Z",
                vec!["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
            ),
            // Several times a day: the skipped hour does not fire, the repeated hour fires on
            // both passes (every real hour).
            (
                "30 * * * *",
                "Europe/Berlin",
                "2026-03-28T23:45:00Z",
                vec![
                    "2026-03-29T00:30:00Z",
                    "2026-03-29T01:30:00Z",
                    "2026-03-29T02:30:00Z",
                ],
            ),
            (
                "30 * * * *",
                "America/New_York",
                "2026-11-01T04:00:00Z",
                vec![
                    "2026-11-01T04:30:00Z",
                    "2026-11-01T05:30:00Z",
                    "2026-11-01T06:30:00Z",
                    "2026-11-01T07:30:00Z",
                ],
            ),
            // A rate is real time: the clock change does not move it.
            (
                "rate(1 day)",
                "Europe/Berlin",
                "2026-03-27T12:00:00Z",
                vec![
                    "2026-03-28T00:00:00Z",
                    "2026-03-29T00:00:00Z",
                    "2026-03-30T00:00:00Z",
                ],
            ),
        ];
        for (expression, zone, after, expected) in cases {
            assert_eq!(
                fires(&timing(expression, zone), after, expected.len()),
                expected,
                "{expression} in {zone} after {after}"
            );
        }
    }

    #[test]
    fn the_window_bounds_the_fires() {
        let mut t = timing("0 * * * *", "UTC");
        t.starts_at = Some(utc("2026-01-01T05:30:00Z"));
        t.ends_at = Some(utc("2026-01-01T08:00:00Z"));
        assert_eq!(
            fires(&t, "2026-01-01T00:00:00Z", 10),
            ["2026-01-01T06:00:00Z", "2026-01-01T07:00:00Z"]
        );
        // A start on a fire fires then; a fraction of a second past it does not.
        t.starts_at = Some(utc("2026-01-01T06:00:00Z"));
        assert_eq!(
            fires(&t, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T06:00:00Z"]
        );
        t.starts_at = Some(utc("2026-01-01T06:00:00.5Z"));
        assert_eq!(
            fires(&t, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T07:00:00Z"]
        );
        assert_eq!(t.next_after(utc("2026-01-01T07:00:00Z")), None);
    }

    #[test]
    fn a_rate_is_anchored_at_its_start_else_its_creation() {
        let created = utc("2026-01-01T10:00:00.25Z");
        let every_5 = |starts_at| {
            Timing::new(
                Expression::parse("rate(5 minutes)").unwrap(),
                Timezone::parse("UTC").unwrap(),
                starts_at,
                None,
                created,
            )
        };
        assert_eq!(
            fires(&every_5(None), "2026-01-01T10:00:00.25Z", 2),
            ["2026-01-01T10:05:01Z", "2026-01-01T10:10:01Z"]
        );
        let start = Some(utc("2026-01-01T12:00:00Z"));
        assert_eq!(
            fires(&every_5(start), "2026-01-01T10:00:00.25Z", 2),
            ["2026-01-01T12:00:00Z", "2026-01-01T12:05:00Z"]
        );
        // A start in the past keeps its grid.
        let start = Some(utc("2025-12-31T23:58:00Z"));
        assert_eq!(
            fires(&every_5(start), "2026-01-01T10:00:00.25Z", 1),
            ["2026-01-01T10:03:00Z"]
        );
    }

    #[test]
    fn a_new_schedule_runs_first_after_its_creation() {
        let s = schedule("0 3 * * *", "2026-05-01T12:00:00Z");
        assert_eq!(s.next_run_at, Some(utc("2026-05-02T01:00:00Z")));
        assert_eq!(s.version, 1);
        assert_eq!(s.template.max_attempts, 5);
        let mut ended = input("0 3 * * *");
        ended.ends_at = Some(utc("2026-05-01T00:00:00Z"));
        let s = ended
            .validate(
                Tenant::parse("demo").unwrap(),
                &SubmissionRules::default(),
                utc("2026-05-01T12:00:00Z"),
            )
            .unwrap();
        assert_eq!(s.next_run_at, None);
    }

    #[test]
    fn every_invalid_field_is_named() {
        let tenant = || Tenant::parse("demo").unwrap();
        let now = utc("2026-05-01T12:00:00Z");
        let mut bad = input("61 * * * *");
        bad.name = String::new();
        bad.timezone = "Europe/Atlantis".into();
        bad.task = TaskTemplateInput {
            kind: "fax".into(),
            payload: json!({}),
            max_attempts: Some(30),
        };
        bad.starts_at = Some(utc("2026-06-01T00:00:00Z"));
        bad.ends_at = Some(utc("2026-05-01T00:00:00Z"));
        bad.missed = MissedPolicy::CatchUp { max: 0 };
        assert_eq!(
            pointers(bad.validate(tenant(), &SubmissionRules::default(), now)),
            [
                "/name",
                "/task/kind",
                "/task/max_attempts",
                "/expression",
                "/timezone",
                "/ends_at",
                "/missed/max"
            ]
        );
        let mut email = input("rate(bad)");
        email.name = "tab\there".into();
        email.task = TaskTemplateInput {
            kind: "email".into(),
            payload: json!({"sender": "x"}),
            max_attempts: None,
        };
        email.starts_at = Some(utc("1969-12-31T23:59:59Z"));
        assert_eq!(
            pointers(email.validate(tenant(), &SubmissionRules::default(), now)),
            [
                "/name",
                "/task/payload/sender",
                "/task/payload/recipient",
                "/task/payload/subject",
                "/task/payload/body",
                "/expression",
                "/starts_at"
            ]
        );
        let mut long = input("* * * * *");
        long.name = "n".repeat(SCHEDULE_NAME_MAX + 1);
        assert_eq!(
            pointers(long.validate(tenant(), &SubmissionRules::default(), now)),
            ["/name"]
        );
        let mut fits = input("* * * * *");
        fits.name = "ü".repeat(SCHEDULE_NAME_MAX);
        assert!(fits
            .validate(tenant(), &SubmissionRules::default(), now)
            .is_ok());
        let pattern = regex::Regex::new(SCHEDULE_NAME_PATTERN).unwrap();
        for name in ["nightly report", "ü", "a\u{80}b", "\t", "a\u{7f}", ""] {
            let ok = check_name(name).is_ok();
            assert_eq!(pattern.is_match(name), ok, "{name:?}");
        }
    }

    #[test]
    fn a_patch_reschedules_only_when_the_timing_changes_or_on_resume() {
        let rules = SubmissionRules::default();
        let s = schedule("0 3 * * *", "2026-05-01T12:00:00Z");
        let later = utc("2026-05-10T12:00:00Z");
        let renamed = s
            .patch(
                SchedulePatch {
                    name: Some("renamed".into()),
                    missed: Some(MissedPolicy::CatchUp { max: 3 }),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap();
        assert!(!renamed.rescheduled);
        assert_eq!(renamed.schedule.next_run_at, s.next_run_at);
        assert_eq!(renamed.schedule.name, "renamed");
        let paused = s
            .patch(
                SchedulePatch {
                    paused: Some(true),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap();
        assert!(!paused.rescheduled);
        assert_eq!(paused.schedule.next_run(), None);
        let resumed = paused
            .schedule
            .patch(
                SchedulePatch {
                    paused: Some(false),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap();
        assert!(resumed.rescheduled);
        assert_eq!(
            resumed.schedule.next_run(),
            Some(utc("2026-05-11T01:00:00Z"))
        );
        let moved = s
            .patch(
                SchedulePatch {
                    expression: Some("0 4 * * *".into()),
                    timezone: Some("UTC".into()),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap();
        assert!(moved.rescheduled);
        assert_eq!(
            moved.schedule.next_run_at,
            Some(utc("2026-05-11T04:00:00Z"))
        );
        let cleared = s
            .patch(
                SchedulePatch {
                    starts_at: Some(Some(utc("2026-06-01T00:00:00Z"))),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap()
            .schedule
            .patch(
                SchedulePatch {
                    starts_at: Some(None),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap();
        assert_eq!(cleared.schedule.timing.starts_at, None);
        assert_eq!(
            cleared.schedule.next_run_at,
            Some(utc("2026-05-11T01:00:00Z"))
        );
        let backwards = s.patch(
            SchedulePatch {
                ends_at: Some(Some(utc("2026-06-01T00:00:00Z"))),
                starts_at: Some(Some(utc("2026-07-01T00:00:00Z"))),
                ..SchedulePatch::default()
            },
            &rules,
            later,
        );
        assert_eq!(backwards.unwrap_err().0[0].pointer, "/ends_at");
        let late_start = s
            .patch(
                SchedulePatch {
                    ends_at: Some(Some(utc("2026-06-01T00:00:00Z"))),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            )
            .unwrap()
            .schedule
            .patch(
                SchedulePatch {
                    starts_at: Some(Some(utc("2026-07-01T00:00:00Z"))),
                    ..SchedulePatch::default()
                },
                &rules,
                later,
            );
        assert_eq!(late_start.unwrap_err().0[0].pointer, "/starts_at");
    }

    fn due_at(s: &Schedule, next: &str, now: &str) -> (Vec<String>, bool, Option<DateTime<Utc>>) {
        let s = Schedule {
            next_run_at: Some(utc(next)),
            ..s.clone()
        };
        let run = s.due(utc(now));
        let fires = run
            .fires
            .iter()
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
            .collect();
        (fires, run.dropped, run.next_run_at)
    }

    #[test]
    fn the_missed_policy_decides_what_a_gap_creates() {
        let every_minute = schedule("* * * * *", "2026-05-01T12:00:00Z");
        // On time: the one due fire.
        assert_eq!(
            due_at(
                &every_minute,
                "2026-05-01T12:01:00Z",
                "2026-05-01T12:01:02Z"
            ),
            (
                vec!["2026-05-01T12:01:00Z".into()],
                false,
                Some(utc("2026-05-01T12:02:00Z"))
            )
        );
        // Skip after a gap: only the latest, if it is recent enough.
        assert_eq!(
            due_at(
                &every_minute,
                "2026-05-01T12:01:00Z",
                "2026-05-01T13:00:30Z"
            ),
            (
                vec!["2026-05-01T13:00:00Z".into()],
                true,
                Some(utc("2026-05-01T13:01:00Z"))
            )
        );
        let daily = schedule("0 3 * * *", "2026-05-01T12:00:00Z");
        assert_eq!(
            due_at(&daily, "2026-05-02T01:00:00Z", "2026-05-02T01:04:00Z").0,
            ["2026-05-02T01:00:00Z"]
        );
        assert_eq!(
            due_at(&daily, "2026-05-02T01:00:00Z", "2026-05-02T01:06:00Z"),
            (vec![], true, Some(utc("2026-05-03T01:00:00Z")))
        );
        // Catch up: the N most recent, oldest first.
        let catch_up = Schedule {
            missed: MissedPolicy::CatchUp { max: 3 },
            ..every_minute.clone()
        };
        assert_eq!(
            due_at(&catch_up, "2026-05-01T12:01:00Z", "2026-05-01T13:00:30Z"),
            (
                vec![
                    "2026-05-01T12:58:00Z".into(),
                    "2026-05-01T12:59:00Z".into(),
                    "2026-05-01T13:00:00Z".into()
                ],
                true,
                Some(utc("2026-05-01T13:01:00Z"))
            )
        );
        assert_eq!(
            due_at(&catch_up, "2026-05-01T12:59:00Z", "2026-05-01T13:00:30Z"),
            (
                vec!["2026-05-01T12:59:00Z".into(), "2026-05-01T13:00:00Z".into()],
                false,
                Some(utc("2026-05-01T13:01:00Z"))
            )
        );
        // Nothing due yet: nothing changes.
        assert_eq!(
            due_at(&catch_up, "2026-05-01T13:01:00Z", "2026-05-01T13:00:30Z"),
            (vec![], false, Some(utc("2026-05-01T13:01:00Z")))
        );
        // The window's end: fires before it only, then no next run.
        let mut ending = catch_up.clone();
        ending.timing.ends_at = Some(utc("2026-05-01T12:03:00Z"));
        assert_eq!(
            due_at(&ending, "2026-05-01T12:01:00Z", "2026-05-01T13:00:30Z"),
            (
                vec!["2026-05-01T12:01:00Z".into(), "2026-05-01T12:02:00Z".into()],
                false,
                None
            )
        );
    }

    #[test]
    fn a_fire_is_a_task_keyed_by_its_schedule_and_time() {
        let s = schedule("0 3 * * *", "2026-05-01T12:00:00Z");
        let at = utc("2026-05-02T01:00:00Z");
        let task = s.fire(at);
        let key = format!("schedule:{}:2026-05-02T01:00:00Z", s.id);
        assert_eq!(task.idempotency_key.as_deref(), Some(key.as_str()));
        assert!(super::super::submission::is_idempotency_key(&key));
        assert_eq!(task.run_after, Some(at));
        assert_eq!(
            task.source,
            Source::Schedule {
                schedule_id: s.id,
                fire_time: at
            }
        );
        let again = s.fire(at);
        assert_eq!(task.request_hash, again.request_hash);
        assert_ne!(task.id, again.id);
    }

    const ZONES: [&str; 6] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ];

    fn expressions() -> impl Strategy<Value = String> {
        let minute = prop::sample::select(vec![
            "0", "30", "*/15", "0-30/10", "5,35", "*", "45", "45-15/10",
        ]);
        let hour = prop::sample::select(vec!["*", "2", "1,2", "*/3", "0-6", "9-17/4", "3", "22-2"]);
        let dom = prop::sample::select(vec!["*", "*", "1", "15", "1-7", "*/10"]);
        let month = prop::sample::select(vec!["*", "*", "1-6", "MAR,OCT,NOV", "*/2"]);
        let dow = prop::sample::select(vec!["*", "*", "1-5", "0", "SUN,WED", "FRI-MON"]);
        (minute, hour, dom, month, dow).prop_map(|(a, b, c, d, e)| format!("{a} {b} {c} {d} {e}"))
    }

    /// A gap's first instant, where a fixed-time expression fires for a time the clock skipped.
    fn fires_legitimately(t: &Timing, fire: DateTime<Utc>) -> bool {
        matches(t, fire) || (t.expression.is_fixed_time() && after_gap(t.timezone.tz(), fire))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn fires_strictly_increase_and_match_the_expression(
            expression in expressions(),
            zone in prop::sample::select(ZONES.to_vec()),
            start in 1_704_067_200i64..1_893_456_000,
        ) {
            let t = timing(&expression, zone);
            let start = DateTime::from_timestamp(start, 0).unwrap();
            let fires = t.preview(start, PREVIEW_LIMIT);
            prop_assert_eq!(fires.len(), PREVIEW_LIMIT);
            let mut previous = start;
            for fire in fires {
                prop_assert!(fire > previous, "{} after {}", fire, previous);
                prop_assert!(fires_legitimately(&t, fire), "{} for {} in {}", fire, expression, zone);
                previous = fire;
            }
        }

        #[test]
        fn the_due_fires_are_the_fires_since_the_last_run(
            expression in expressions(),
            zone in prop::sample::select(ZONES.to_vec()),
            start in 1_704_067_200i64..1_893_456_000,
            span in 0i64..(3 * 86_400),
            max in 1u32..40,
        ) {
            let t = timing(&expression, zone);
            let start = DateTime::from_timestamp(start, 0).unwrap();
            let now = start + TimeDelta::seconds(span);
            let Some(first) = t.next_after(start) else { return Ok(()) };
            let mut forward = Vec::new();
            let mut at = first;
            while at <= now {
                forward.push(at);
                at = t.next_after(at).unwrap();
            }
            let s = Schedule {
                timing: t.clone(),
                missed: MissedPolicy::CatchUp { max },
                next_run_at: Some(first),
                ..schedule("* * * * *", "2020-01-01T00:00:00Z")
            };
            let run = s.due(now);
            let expected: Vec<_> = forward.iter().rev().take(max as usize).rev().copied().collect();
            prop_assert_eq!(&run.fires, &expected);
            prop_assert_eq!(run.dropped, forward.len() > max as usize);
            prop_assert_eq!(run.next_run_at, Some(at));
        }
    }
}
