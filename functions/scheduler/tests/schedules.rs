//! The `schedules` job against the real database (and the emulator's SQS): each fire once,
//! whatever runs twice, overlaps or stops halfway; the missed-run policies; paused and ended
//! schedules; thousands of due schedules in bounded batches.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Timelike, Utc};
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{json, Value};
use tms::adapters::postgres::PostgresStore;
use tms::adapters::sqs::SqsWorkQueue;
use tms::deadline::Deadline;
use tms::ports::{ScheduleStore, SubmissionStore, TaskRepository, WorkQueue};
use tms::telemetry::metrics::MemorySink;
use tms::{
    MissedPolicy, Schedule, ScheduleInput, Scope, Source, SubmissionRules, TaskId,
    TaskTemplateInput, WorkMessage,
};
use tms_scheduler::jobs::{schedules_at, SchedulesReport};
use tms_scheduler::{function_handler, Deps, Settings};
use tms_testkit::aws::{sdk_config, TestQueue};
use tms_testkit::fakes::MemoryQueue;
use tms_testkit::tasks::tenant;
use tms_testkit::TestDb;

struct Fixture {
    db: TestDb,
    store: PostgresStore,
    queue: TestQueue,
    deps: Deps,
}

fn deps_with(store: &PostgresStore, queue: Arc<dyn WorkQueue>, settings: Settings) -> Deps {
    Deps {
        store: Arc::new(store.clone()),
        work: Arc::new(store.clone()),
        queue,
        metrics: Arc::new(MemorySink::default()),
        schedules: Arc::new(store.clone()),
        submissions: Arc::new(store.clone()),
        events: None,
        notifications: Arc::new(store.clone()),
        settings,
    }
}

async fn fixture() -> Fixture {
    let db = TestDb::new().await;
    let store = db.store();
    let queue = TestQueue::new(&sdk_config().await, None).await;
    let sqs = Arc::new(SqsWorkQueue::new(queue.client.clone(), &queue.url));
    let deps = deps_with(&store, sqs, Settings::default());
    Fixture {
        db,
        store,
        queue,
        deps,
    }
}

/// Half a minute past the current minute: every-minute schedules have a fire 30 s ago.
fn now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::seconds(30)
}

fn minute(now: DateTime<Utc>, offset: i64) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::minutes(1)).unwrap() + TimeDelta::minutes(offset)
}

/// A daily cron expression firing at `t`'s time of day (UTC).
fn daily_at(t: DateTime<Utc>) -> String {
    format!("{} {} * * *", t.minute(), t.hour())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn input(name: &str, expression: &str, missed: MissedPolicy) -> ScheduleInput {
    ScheduleInput {
        name: name.into(),
        expression: expression.into(),
        timezone: "UTC".into(),
        task: TaskTemplateInput {
            kind: "noop".into(),
            payload: json!({"schedule": name}),
            max_attempts: Some(3),
        },
        starts_at: None,
        ends_at: None,
        missed,
        paused: false,
    }
}

/// Stores the schedule, created an hour before `now`, with its next run at `next_run_at`.
async fn stored(
    f: &Fixture,
    input: ScheduleInput,
    now: DateTime<Utc>,
    next_run_at: Option<DateTime<Utc>>,
) -> Schedule {
    let schedule = input
        .validate(
            tenant("demo"),
            &SubmissionRules::default(),
            now - TimeDelta::hours(1),
        )
        .unwrap();
    f.store.create_schedule(&schedule).await.unwrap();
    f.db.admin()
        .await
        .execute(
            "UPDATE tms.schedules SET next_run_at = $2 WHERE id = $1",
            &[schedule.id.as_uuid(), &next_run_at],
        )
        .await
        .unwrap();
    reload(f, &schedule).await
}

async fn reload(f: &Fixture, s: &Schedule) -> Schedule {
    f.store
        .get_schedule(&Scope::All, s.id)
        .await
        .unwrap()
        .expect("the schedule")
}

/// The fire times of the schedule's tasks, and their idempotency keys.
async fn fired(f: &Fixture, s: &Schedule) -> Vec<(String, String)> {
    f.db.admin()
        .await
        .query(
            "SELECT fire_time, idempotency_key FROM tms.tasks WHERE schedule_id = $1 \
             ORDER BY fire_time",
            &[s.id.as_uuid()],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (rfc3339(r.get(0)), r.get(1)))
        .collect()
}

fn key(s: &Schedule, at: DateTime<Utc>) -> (String, String) {
    (rfc3339(at), format!("schedule:{}:{}", s.id, rfc3339(at)))
}

async fn run_at(deps: &Deps, now: DateTime<Utc>) -> SchedulesReport {
    schedules_at(deps, &Deadline::after(Duration::from_secs(120)), now)
        .await
        .unwrap()
}

async fn invoke(deps: &Deps) -> Value {
    function_handler(
        deps,
        LambdaEvent::new(json!({"job": "schedules"}), Context::default()),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_due_schedule_fires_once_with_its_key_and_source() {
    let f = fixture().await;
    let fire = minute(Utc::now(), 0);
    let schedule = stored(
        &f,
        input("daily", &daily_at(fire), MissedPolicy::Skip),
        Utc::now(),
        Some(fire),
    )
    .await;

    let out = invoke(&f.deps).await;
    assert_eq!(out["job"], "schedules");
    assert_eq!(out["status"], "done");
    assert_eq!(out["report"]["created"], 1, "{out}");
    assert_eq!(out["report"]["sent"], 1, "{out}");
    assert_eq!(fired(&f, &schedule).await, [key(&schedule, fire)]);

    let messages = f.queue.drain(&f.queue.url, 1).await;
    assert_eq!(messages.len(), 1);
    let message: WorkMessage = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    let task = f
        .store
        .get(&Scope::Tenant(tenant("demo")), message.task_id)
        .await
        .unwrap()
        .expect("the message names the fire's task");
    assert_eq!(
        task.source,
        Source::Schedule {
            schedule_id: schedule.id,
            fire_time: fire
        }
    );
    assert_eq!(task.payload, json!({"schedule": "daily"}));
    assert_eq!((task.kind.as_str(), task.max_attempts), ("noop", 3));
    assert_eq!(task.run_after, fire);
    assert!(task.enqueued_at.is_some(), "its message is marked as sent");

    let after = reload(&f, &schedule).await;
    assert_eq!(after.last_fire_at, Some(fire));
    assert_eq!(after.next_run_at, Some(fire + TimeDelta::days(1)));
    assert_eq!(
        after.version, schedule.version,
        "bookkeeping is not a change"
    );

    let again = invoke(&f.deps).await;
    assert_eq!(again["report"]["created"], 0, "{again}");
    assert_eq!(fired(&f, &schedule).await.len(), 1);
}

#[tokio::test]
async fn runs_twice_or_at_once_create_each_fire_once() {
    let f = fixture().await;
    let now = now();
    let schedule = stored(
        &f,
        input("five", "* * * * *", MissedPolicy::CatchUp { max: 5 }),
        now,
        Some(minute(now, -4)),
    )
    .await;
    let want: Vec<_> = (-4..=0).map(|m| key(&schedule, minute(now, m))).collect();

    // Two runs at once, past the job lock (which would make one of them skip).
    let (a, b) = tokio::join!(run_at(&f.deps, now), run_at(&f.deps, now));
    assert_eq!(a.created + b.created, 5, "{a:?} {b:?}");
    assert_eq!(fired(&f, &schedule).await, want);

    // The same run again, as if its bookkeeping had been lost: the fires exist.
    f.db.admin()
        .await
        .execute(
            "UPDATE tms.schedules SET next_run_at = $2 WHERE id = $1",
            &[schedule.id.as_uuid(), &minute(now, -4)],
        )
        .await
        .unwrap();
    let again = run_at(&f.deps, now).await;
    assert_eq!((again.created, again.existing), (0, 5), "{again:?}");
    assert_eq!(fired(&f, &schedule).await, want);

    // Two invocations at once: the lock lets one work, the other skips or finds nothing due.
    let fire = minute(Utc::now(), 0);
    let daily = stored(
        &f,
        input("daily", &daily_at(fire), MissedPolicy::CatchUp { max: 1 }),
        now,
        Some(fire),
    )
    .await;
    let (x, y) = tokio::join!(invoke(&f.deps), invoke(&f.deps));
    let created = [&x, &y]
        .iter()
        .map(|out| out["report"]["created"].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(created, 1, "{x} {y}");
    assert_eq!(fired(&f, &daily).await.len(), 1);
}

#[tokio::test]
async fn a_run_that_stopped_between_its_tasks_and_its_bookkeeping_creates_nothing_twice() {
    let f = fixture().await;
    let now = now();
    let schedule = stored(
        &f,
        input("three", "* * * * *", MissedPolicy::CatchUp { max: 3 }),
        now,
        Some(minute(now, -2)),
    )
    .await;
    // What a run creates before its bookkeeping, then nothing more (the function stopped).
    let run = schedule.due(now);
    let tasks: Vec<_> = run.fires.iter().map(|at| schedule.fire(*at)).collect();
    let submitted = f.store.submit(&tasks).await.unwrap();
    assert!(submitted.iter().all(|s| s.is_some_and(|s| !s.replayed)));
    assert_eq!(
        reload(&f, &schedule).await.next_run_at,
        Some(minute(now, -2))
    );

    let report = run_at(&f.deps, now).await;
    assert_eq!((report.created, report.existing), (0, 3), "{report:?}");
    let want: Vec<_> = (-2..=0).map(|m| key(&schedule, minute(now, m))).collect();
    assert_eq!(fired(&f, &schedule).await, want);
    let after = reload(&f, &schedule).await;
    assert_eq!(after.next_run_at, Some(minute(now, 1)));
    assert_eq!(after.last_fire_at, Some(minute(now, 0)));

    // A minute later only the new fire is created.
    let later = run_at(&f.deps, now + TimeDelta::minutes(1)).await;
    assert_eq!((later.created, later.existing), (1, 0), "{later:?}");
    assert_eq!(fired(&f, &schedule).await.len(), 4);
}

#[tokio::test]
async fn after_a_gap_skip_creates_the_latest_fire_and_catch_up_the_most_recent() {
    let f = fixture().await;
    let now = now();
    let an_hour_ago = Some(minute(now, -60));
    let skip = stored(
        &f,
        input("skip", "* * * * *", MissedPolicy::Skip),
        now,
        an_hour_ago,
    )
    .await;
    let catch_up = stored(
        &f,
        input("catch up", "* * * * *", MissedPolicy::CatchUp { max: 10 }),
        now,
        an_hour_ago,
    )
    .await;
    // Its only due fire is an hour late: too late to skip to.
    let late = minute(now, -60);
    let daily = stored(
        &f,
        input("daily", &daily_at(late), MissedPolicy::Skip),
        now,
        Some(late),
    )
    .await;

    let report = run_at(&f.deps, now).await;
    assert_eq!(report.schedules, 3, "{report:?}");
    assert_eq!(report.dropped, 3, "{report:?}");
    assert_eq!(fired(&f, &skip).await, [key(&skip, minute(now, 0))]);
    let recent: Vec<_> = (-9..=0).map(|m| key(&catch_up, minute(now, m))).collect();
    assert_eq!(fired(&f, &catch_up).await, recent);
    assert_eq!(fired(&f, &daily).await, []);
    for s in [&skip, &catch_up] {
        assert_eq!(reload(&f, s).await.next_run_at, Some(minute(now, 1)));
    }
    assert_eq!(
        reload(&f, &daily).await.next_run_at,
        Some(late + TimeDelta::days(1))
    );
}

#[tokio::test]
async fn paused_and_ended_schedules_do_not_fire() {
    let f = fixture().await;
    let now = now();
    let due = Some(minute(now, -2));
    let mut paused = input("paused", "* * * * *", MissedPolicy::CatchUp { max: 5 });
    paused.paused = true;
    let paused = stored(&f, paused, now, due).await;
    let ended = stored(
        &f,
        input("ended", "* * * * *", MissedPolicy::CatchUp { max: 5 }),
        now,
        None,
    )
    .await;
    let mut ending = input("ending", "* * * * *", MissedPolicy::CatchUp { max: 5 });
    ending.ends_at = Some(minute(now, -1));
    let ending = stored(&f, ending, now, due).await;

    let report = run_at(&f.deps, now).await;
    assert_eq!(report.schedules, 1, "{report:?}");
    assert_eq!(fired(&f, &paused).await, []);
    assert_eq!(fired(&f, &ended).await, []);
    assert_eq!(
        fired(&f, &ending).await,
        [key(&ending, minute(now, -2))],
        "only the fires before its end"
    );
    assert_eq!(reload(&f, &ending).await.next_run_at, None, "ended now");
    assert_eq!(
        run_at(&f.deps, now + TimeDelta::hours(1)).await.schedules,
        0
    );
}

#[tokio::test]
async fn a_schedule_changed_during_a_run_keeps_its_change() {
    let f = fixture().await;
    let now = now();
    let schedule = stored(
        &f,
        input("changing", "* * * * *", MissedPolicy::Skip),
        now,
        Some(minute(now, 0)),
    )
    .await;
    // A user's change between the run's read and its bookkeeping: the version moved on.
    let changed = schedule
        .patch(
            tms::SchedulePatch {
                expression: Some("0 12 * * *".into()),
                ..tms::SchedulePatch::default()
            },
            &SubmissionRules::default(),
            now,
        )
        .unwrap();
    let due = f.store.due_schedules(now, None, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    f.store
        .update_schedule(&Scope::All, &changed.schedule, changed.rescheduled)
        .await
        .unwrap();
    let run = due[0].due(now);
    let recorded = f
        .store
        .record_runs(
            &[tms::ports::ScheduleRun {
                id: schedule.id,
                version: due[0].version,
                due_at: due[0].next_run_at.unwrap(),
                next_run_at: run.next_run_at,
                last_fire_at: run.fires.last().copied(),
            }],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(recorded, 0);
    let after = reload(&f, &schedule).await;
    assert_eq!(after.next_run_at, changed.schedule.next_run_at);
    assert_eq!(after.timing.expression.as_str(), "0 12 * * *");
}

/// Schedules inserted directly, all due at `at`: every-minute noop schedules of tenant demo.
async fn many_due(f: &Fixture, n: i64, at: DateTime<Utc>) {
    f.db.admin()
        .await
        .execute(
            "INSERT INTO tms.schedules (id, tenant, name, expression, timezone, kind, payload, \
                 max_attempts, missed, next_run_at, created_at) \
             SELECT gen_random_uuid(), 'demo', 'load-' || i, '* * * * *', 'UTC', 'noop', \
                 json_build_object('i', i), 3, 'skip', $2::timestamptz, $2::timestamptz - interval '1 hour' \
             FROM generate_series(1, $1::int8) AS i",
            &[&n, &at],
        )
        .await
        .unwrap();
}

async fn task_count(f: &Fixture) -> i64 {
    f.db.admin()
        .await
        .query_one(
            "SELECT count(*) FROM tms.tasks WHERE source = 'schedule'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn statements_per_batch_do_not_grow_with_the_batch() {
    let f = fixture().await;
    f.db.track_statements().await;
    let mut counts = Vec::new();
    let mut now = now();
    for n in [1u32, 10, 100] {
        now += TimeDelta::hours(1);
        f.db.admin()
            .await
            .execute("DELETE FROM tms.schedules", &[])
            .await
            .unwrap();
        many_due(&f, i64::from(n), minute(now, 0)).await;
        let deps = deps_with(
            &f.store,
            Arc::new(MemoryQueue::default()),
            Settings {
                schedule_batch: n,
                ..Settings::default()
            },
        );
        let before = f.db.app_statements().await;
        let report = run_at(&deps, now).await;
        let statements = f.db.app_statements().await - before;
        assert_eq!(report.created, n as usize);
        counts.push((report.batches, statements));
    }
    assert_eq!(
        counts,
        [(2, 4); 3],
        "a full batch (due, submit, record), then an empty one (due)"
    );
}

#[tokio::test]
async fn ten_thousand_due_schedules_fire_in_bounded_batches() {
    let f = fixture().await;
    let now = now();
    many_due(&f, 10_000, minute(now, 0)).await;
    f.db.track_statements().await;
    let queue = Arc::new(MemoryQueue::default());
    let deps = deps_with(&f.store, queue.clone(), Settings::default());
    let deadline = Deadline::after(Duration::from_secs(120));
    let before = f.db.app_statements().await;
    let started = Instant::now();
    let report = schedules_at(&deps, &deadline, now).await.unwrap();
    let took = started.elapsed();
    let statements = f.db.app_statements().await - before;
    eprintln!("10,000 schedules: {report:?} in {took:?}, {statements} statements");
    assert_eq!(report.schedules, 10_000);
    assert_eq!(report.created, 10_000);
    assert_eq!(report.sent, 10_000);
    let full = 10_000 / Settings::default().schedule_batch;
    assert_eq!(report.batches, full + 1, "full batches, then an empty one");
    assert_eq!(statements, 3 * i64::from(full) + 1);
    assert!(
        took < Duration::from_secs(120) - Settings::default().stop_margin,
        "{took:?}"
    );
    assert_eq!(task_count(&f).await, 10_000);
    let sent: std::collections::HashSet<TaskId> = queue
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|d| d.message.task_id)
        .collect();
    assert_eq!(sent.len(), 10_000);
    let left: i64 =
        f.db.admin()
            .await
            .query_one(
                "SELECT count(*) FROM tms.schedules WHERE next_run_at <= $1",
                &[&now],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(left, 0, "every schedule moved on to its next run");
    let again = run_at(&deps, now).await;
    assert_eq!((again.schedules, again.created), (0, 0));
}
