//! The bench's own stack: a fresh `tms` database on the bench's PostgreSQL cluster (bootstrapped
//! as a deployment is), the queues, bucket and parameters in the bench's emulator, and the
//! helpers every measurement shares (admin SQL, psql, pgbench).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use aws_config::SdkConfig;
use tms::adapters::postgres::PgSettings;
use tms::config::{DatabaseConfig, SslMode};
use tms::ports::Secret;
use tms_local::{Resources, Stack};

/// Sizes and durations, from the environment (`BENCH_QUICK=1` shrinks them for a smoke run).
#[derive(Debug, Clone)]
pub struct Settings {
    pub strict: bool,
    pub quick: bool,
    /// Runs of each measurement; the report gives their median (`BENCH_RUNS`).
    pub runs: usize,
    /// The two import sizes; peak memory must not grow from the first to the second.
    pub import_rows: [u64; 2],
    /// Concurrent HTTP clients (and pgbench clients) of the API measurement (`BENCH_API_CLIENTS`).
    pub api_clients: Vec<usize>,
    pub api_seconds: u64,
    /// Batches handled at once, as Lambda would run environments (`BENCH_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// Messages per batch (`BENCH_WORKER_BATCH_SIZES`).
    pub worker_batch_sizes: Vec<usize>,
    /// Tasks per worker run (`BENCH_WORKER_TASKS`).
    pub worker_tasks: usize,
    pub init_runs: usize,
    /// `BENCH_ONLY=init,api`: run only these measurements (init, lambda, package, import, api, worker).
    pub only: Option<Vec<String>>,
}

fn var<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name} must be a number, got {v:?}")),
        _ => Ok(default),
    }
}

/// A comma-separated list of positive numbers.
fn list(name: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .split(',')
            .map(|n| match n.trim().parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => bail!("{name} must list positive numbers separated by commas, got {v:?}"),
            })
            .collect(),
        _ => Ok(default.to_vec()),
    }
}

impl Settings {
    /// # Errors
    /// An unparsable variable.
    pub fn from_env() -> anyhow::Result<Self> {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
        Ok(Self {
            strict: std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1"),
            quick,
            runs: var("BENCH_RUNS", if quick { 1 } else { 3 })?.max(1),
            import_rows: if quick {
                [10_000, 100_000]
            } else {
                [100_000, 1_000_000]
            },
            api_clients: list("BENCH_API_CLIENTS", &[1, 8])?,
            api_seconds: var("BENCH_API_SECONDS", if quick { 3 } else { 10 })?,
            worker_concurrency: var("BENCH_WORKER_CONCURRENCY", 4)?.max(1),
            worker_batch_sizes: list("BENCH_WORKER_BATCH_SIZES", &[10, 100])?,
            worker_tasks: var("BENCH_WORKER_TASKS", if quick { 2_000 } else { 30_000 })?,
            init_runs: var("BENCH_INIT_RUNS", if quick { 3 } else { 10 })?,
            only: std::env::var("BENCH_ONLY")
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| v.split(',').map(|m| m.trim().to_owned()).collect()),
        })
    }

    /// Whether the measurement named `name` runs.
    pub fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|m| m == name))
    }

    /// The settings as BENCHMARKS.md lists them.
    pub fn describe(&self) -> String {
        let join = |v: &[usize]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "- runs per measurement: {} (init: {} starts per binary)\n\
             - import sizes: {} and {} rows\n\
             - API: {} s per run at {} concurrent clients\n\
             - worker: {} tasks per run in batches of {}, {} batches at a time\n\
             - PostgreSQL: the bench's own cluster, fsync and synchronous_commit on\n\
             - a run and its baseline during which the host took more than {} of the CPU \
             (steal) are measured again, at most {} times{}",
            self.runs,
            self.init_runs,
            self.import_rows[0],
            self.import_rows[1],
            self.api_seconds,
            join(&self.api_clients),
            self.worker_tasks,
            join(&self.worker_batch_sizes),
            self.worker_concurrency,
            percent(MAX_STEAL),
            STEAL_RETRIES,
            if self.quick {
                "\n- BENCH_QUICK=1: smoke-run sizes"
            } else {
                ""
            }
        )
    }
}

pub struct Bench {
    pub stack: Stack,
    pub resources: Resources,
    pub aws: SdkConfig,
    /// `.local/bench`: generated files and logs of this run.
    pub scratch: PathBuf,
    /// `target/release`: the binaries under test.
    pub release: PathBuf,
    pub settings: Settings,
}

impl Bench {
    /// Checks that the services are the bench's own, then creates a fresh `tms` database,
    /// provisions the emulator and runs the bootstrapper (roles, privileges, migrations).
    ///
    /// # Errors
    /// When the services are not the bench's, or a setup step fails.
    pub async fn setup(root: &Path, settings: Settings) -> anyhow::Result<Self> {
        let stack = Stack::from_env(root)?;
        refuse_foreign_cluster(&stack).await?;
        admin_client(&stack, "postgres")
            .await?
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                stack.names.database
            ))
            .await?;
        stack.ensure_database().await?;
        let aws = stack.sdk_config().await;
        let resources = stack.provision(&aws).await?;
        tms_local::bootstrap(&stack).await?;
        let scratch = root.join(".local/bench");
        std::fs::create_dir_all(&scratch)?;
        Ok(Self {
            stack,
            resources,
            aws,
            scratch,
            release: std::env::var_os("BENCH_BINARIES")
                .filter(|d| !d.is_empty())
                .map_or_else(|| root.join("target/release"), |d| root.join(d)),
            settings,
        })
    }

    /// The superuser, on `dbname`.
    ///
    /// # Errors
    /// When the cluster cannot be reached.
    pub async fn admin(&self, dbname: &str) -> anyhow::Result<tokio_postgres::Client> {
        admin_client(&self.stack, dbname).await
    }

    /// Empties the task tables and writes a checkpoint, so every measurement starts alike.
    ///
    /// # Errors
    /// A failed statement.
    pub async fn reset_tables(&self) -> anyhow::Result<()> {
        let admin = self.admin(&self.stack.names.database).await?;
        admin
            .batch_execute("TRUNCATE tms.task_events, tms.tasks, tms.imports; CHECKPOINT")
            .await?;
        Ok(())
    }

    /// Counts the tasks in `status`.
    ///
    /// # Errors
    /// A failed statement.
    pub async fn count_tasks(&self, status: &str) -> anyhow::Result<i64> {
        let admin = self.admin(&self.stack.names.database).await?;
        Ok(admin
            .query_one(
                "SELECT count(*) FROM tms.tasks WHERE status = $1",
                &[&status],
            )
            .await?
            .get(0))
    }

    /// The function's environment as `make dev` gives it, plus `extra`.
    pub fn function_env(&self, extra: &[(&str, String)]) -> Vec<(String, String)> {
        let mut env = self.stack.function_env(&self.resources);
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    }

    /// libpq's variables for psql and pgbench: the application user, TLS verified.
    fn libpq_env(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        let [_, app, _] = self.stack.role_passwords()?;
        Ok(vec![
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", self.stack.pg_port.to_string()),
            ("PGUSER", "tms_app".into()),
            ("PGPASSWORD", app),
            ("PGDATABASE", self.stack.names.database.clone()),
            ("PGSSLMODE", "verify-full".into()),
            ("PGSSLROOTCERT", self.stack.ca_file().display().to_string()),
        ])
    }

    /// Runs psql or pgbench as the application user; returns its standard output.
    ///
    /// # Errors
    /// When the program cannot run or fails.
    pub async fn libpq_tool(&self, program: &Path, args: &[String]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(program)
            .args(args)
            .envs(self.libpq_env()?)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("run {}", program.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                program.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// pgbench with a custom script (prepared statements, no vacuum).
    ///
    /// # Errors
    /// When pgbench fails, reports failed transactions, or prints no rate.
    pub async fn pgbench(
        &self,
        name: &str,
        script: &str,
        args: &[String],
    ) -> anyhow::Result<Pgbench> {
        let file = self.scratch.join(format!("{name}.pgbench.sql"));
        std::fs::write(&file, script)?;
        let mut all = vec![
            "--no-vacuum".to_owned(),
            "--protocol=prepared".to_owned(),
            format!("--file={}", file.display()),
        ];
        all.extend_from_slice(args);
        let out = self.libpq_tool(&pgbench_path(), &all).await?;
        std::fs::write(self.scratch.join(format!("{name}.pgbench.out")), &out)?;
        Pgbench::parse(name, &out)
    }

    /// Where the run was made, for BENCHMARKS.md.
    pub async fn machine(&self) -> Vec<(String, String)> {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or("unknown".to_owned(), |kib| {
                format!("{:.1} GiB", kib / 1024.0 / 1024.0)
            });
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| std::env::consts::OS.to_owned());
        // The version numbers only: a kernel's local suffix names the host's build, not the machine.
        let kernel: String = read("/proc/sys/kernel/osrelease")
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        let postgres = match self.admin("postgres").await {
            Ok(admin) => admin
                .query_one("SHOW server_version", &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_default(),
            Err(_) => String::new(),
        };
        [
            (
                "date",
                chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            ),
            ("CPU", format!("{cpu}, {cores} cores")),
            ("memory", memory),
            ("OS", format!("{os}, kernel {kernel}")),
            ("Rust", rustc),
            ("PostgreSQL", postgres),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// What pgbench reports of a run.
#[derive(Debug, Clone, Copy)]
pub struct Pgbench {
    /// Transactions per second, without the initial connection time.
    pub tps: f64,
    /// Mean transaction latency.
    pub latency_ms: f64,
}

impl Pgbench {
    fn parse(name: &str, out: &str) -> anyhow::Result<Self> {
        if let Some(failed) = out
            .lines()
            .find_map(|l| l.strip_prefix("number of failed transactions: "))
        {
            ensure!(
                failed.starts_with("0 "),
                "pgbench {name}: {failed} transactions failed"
            );
        }
        let tps = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("tps = ")
                    .filter(|rest| rest.contains("without initial connection time"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
            })
            .with_context(|| format!("pgbench {name} printed no rate:\n{out}"))?;
        let latency_ms = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("latency average = ")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse().ok())
            })
            .with_context(|| format!("pgbench {name} printed no latency:\n{out}"))?;
        Ok(Self { tps, latency_ms })
    }
}

/// The machine's CPU time so far, as `/proc/stat` counts it: all of it, and the part the
/// hypervisor gave to other guests while this one had work ("steal"). On a shared virtual
/// machine that part comes and goes by the minute, and a run that lost a sixth of the machine
/// to it measures the neighbours, not TMS.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuClock {
    total: u64,
    steal: u64,
}

impl CpuClock {
    /// Now; all zero where `/proc/stat` cannot be read (no steal is then ever seen).
    pub fn now() -> Self {
        std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| Self::parse(&stat))
            .unwrap_or_default()
    }

    /// The first line: `cpu  user nice system idle iowait irq softirq steal guest guest_nice`
    /// (guest time is already counted in user time).
    fn parse(stat: &str) -> Option<Self> {
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self {
            total: fields.iter().sum(),
            steal: *fields.get(7).unwrap_or(&0),
        })
    }

    /// The share of the machine's CPU time stolen since `earlier`, 0 to 1.
    pub fn stolen_since(&self, earlier: &CpuClock) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.steal.saturating_sub(earlier.steal) as f64 / total as f64
    }
}

/// The most of the machine's CPU time the host may take from a run and its baseline (see
/// [`CpuClock`]) before the pair is measured again.
pub const MAX_STEAL: f64 = 0.05;
/// How many times one pair is measured again for steal; the last attempt counts regardless.
pub const STEAL_RETRIES: usize = 2;

/// A share (0 to 1) as a percentage with one decimal.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// `work`'s result and the share of the machine's CPU the host stole while it ran.
pub async fn with_steal<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64)> {
    let clock = CpuClock::now();
    let value = work.await?;
    Ok((value, CpuClock::now().stolen_since(&clock)))
}

/// What the host took from one measurement's counted pairs (a run and its baseline), and how
/// many pairs were measured again because it took more than [`MAX_STEAL`] from either side:
/// one API run that lost 15% of the machine ran at 1,583 req/s, the next, with none lost, at
/// 2,512; the disks and pgbench's rates drift by the minute as well, which is why each run has
/// its baseline from the same minute.
#[derive(Debug, Default)]
pub struct Steal {
    most: f64,
    repeated: usize,
}

impl Steal {
    /// Measures one pair: `pair` returns its result and the larger steal of its two sides;
    /// `describe` gives the figures for the progress line, which `label` starts.
    ///
    /// # Errors
    /// The first error of an attempt.
    pub async fn pair<T, F, Fut>(
        &mut self,
        label: &str,
        mut pair: F,
        describe: impl Fn(&T) -> String,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<(T, f64)>>,
    {
        let mut attempt = 0;
        loop {
            let (value, steal) = pair().await?;
            println!(
                "  {label}: {}; host steal {}",
                describe(&value),
                percent(steal)
            );
            if steal <= MAX_STEAL || attempt == STEAL_RETRIES {
                self.most = self.most.max(steal);
                return Ok(value);
            }
            attempt += 1;
            self.repeated += 1;
            println!(
                "  the host took more than {} of the CPU: measured again",
                percent(MAX_STEAL)
            );
        }
    }

    /// For the report: the most any counted pair lost, and the pairs measured again.
    pub fn note(&self) -> String {
        let mut note = format!("host steal at most {}", percent(self.most));
        if self.repeated > 0 {
            note.push_str(&format!(
                " ({} pair(s) measured again for more than {})",
                self.repeated,
                percent(MAX_STEAL)
            ));
        }
        note
    }
}

async fn admin_client(stack: &Stack, dbname: &str) -> anyhow::Result<tokio_postgres::Client> {
    let db = DatabaseConfig {
        url: format!("postgres://postgres@127.0.0.1:{}/{dbname}", stack.pg_port),
        ssl_mode: SslMode::VerifyFull,
        ca_file: Some(stack.ca_file()),
        password_param: None,
        pool_size: 1,
        connect_timeout: Duration::from_secs(5),
    };
    PgSettings::new(&db, Some(&Secret::new(stack.admin_password()?)))?
        .connect()
        .await
        .with_context(|| {
            format!(
                "connect to the bench's PostgreSQL on port {}",
                stack.pg_port
            )
        })
}

/// The bench drops and recreates its database: only on the cluster in its own folder.
async fn refuse_foreign_cluster(stack: &Stack) -> anyhow::Result<()> {
    let own = stack.pg_dir.join("data").canonicalize().with_context(|| {
        format!(
            "{} holds no cluster: run the bench with `make bench`",
            stack.pg_dir.display()
        )
    })?;
    let admin = admin_client(stack, "postgres").await?;
    let show = |name: &'static str| {
        let admin = &admin;
        async move {
            let value: String = admin.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
            anyhow::Ok(value)
        }
    };
    let dir = show("data_directory").await?;
    ensure!(
        Path::new(&dir).canonicalize().ok().as_deref() == Some(own.as_path()),
        "the PostgreSQL on port {} serves {dir}, not the bench's cluster in {}: run the bench with `make bench`",
        stack.pg_port,
        own.display()
    );
    // Commit-bound figures mean something only with durable commits.
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        let value = show(setting).await?;
        ensure!(
            value == "on",
            "the bench's PostgreSQL runs with {setting} = {value}: stop it (TMS_PG_DIR={} scripts/postgres.sh stop) and run `make bench` again",
            stack.pg_dir.display()
        );
    }
    Ok(())
}

/// pgbench of the PostgreSQL server the scripts run (`PG_BINDIR`, which scripts/bench.sh sets),
/// else the one on `PATH`.
pub fn pgbench_path() -> PathBuf {
    std::env::var_os("PG_BINDIR")
        .map(|dir| Path::new(&dir).join("pgbench"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("pgbench"))
}

/// The UUID of the `n`th generated task: time-ordered like the UUID v7 ids TMS makes, and
/// computable in SQL (see [`SQL_TASK_ID`]) so pgbench scripts can name the same rows.
pub fn task_id(n: i64) -> uuid::Uuid {
    uuid::Uuid::parse_str(&format!("00000000-0000-7000-8000-{n:012x}")).expect("a valid UUID")
}

/// [`task_id`] in SQL, of the integer expression substituted for `{n}`.
pub const SQL_TASK_ID: &str = "('00000000-0000-7000-8000-' || lpad(to_hex({n}), 12, '0'))::uuid";

/// Inserts pending `noop` tasks 1..=count with [`task_id`]s, as the API creates them.
///
/// # Errors
/// A failed statement.
pub async fn insert_pending_tasks(bench: &Bench, tenant: &str, count: i64) -> anyhow::Result<()> {
    let admin = bench.admin(&bench.stack.names.database).await?;
    let id = SQL_TASK_ID.replace("{n}", "g");
    admin
        .execute(
            &format!(
                "WITH ins AS (
                    INSERT INTO tms.tasks (id, tenant, kind, payload, max_attempts, run_after,
                        request_hash, correlation_id, source)
                    SELECT {id}, $1, 'noop', '{{}}', 5, now() - interval '1 second',
                        sha256(g::text::bytea), gen_random_uuid()::text, 'api'
                    FROM generate_series(1, $2::int8) g
                    RETURNING id, status, attempts, correlation_id
                 )
                 INSERT INTO tms.task_events (task_id, from_status, to_status, attempt, correlation_id)
                 SELECT id, NULL, status, attempts, correlation_id FROM ins"
            ),
            &[&tenant, &count],
        )
        .await?;
    admin.batch_execute("ANALYZE tms.tasks; CHECKPOINT").await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steal_is_the_share_of_all_cpu_time_between_two_readings() {
        let before = CpuClock::parse("cpu  100 0 50 800 0 0 0 50 0 0\ncpu0 1 2 3\n").unwrap();
        let after = CpuClock::parse("cpu  400 0 150 1200 0 0 0 250 7 0\n").unwrap();
        // 1,000 jiffies passed, 200 of them stolen; guest time is not counted twice.
        assert_eq!(after.stolen_since(&before), 0.2);
        assert_eq!(after.stolen_since(&after), 0.0);
        assert_eq!(CpuClock::parse("intr 1 2 3\n"), None);
    }

    /// Attempt `n` of a pair returns `n` and the `n`th steal of `steals`.
    async fn pairs_with(steals: &[f64]) -> (Vec<usize>, usize, Steal) {
        let mut steal = Steal::default();
        let mut attempts = Vec::new();
        let kept = steal
            .pair(
                "run",
                || {
                    attempts.push(attempts.len());
                    let n = attempts.len() - 1;
                    let stolen = steals[n];
                    async move { Ok((n, stolen)) }
                },
                |n| format!("attempt {n}"),
            )
            .await
            .unwrap();
        (attempts, kept, steal)
    }

    #[tokio::test]
    async fn a_pair_the_host_stole_from_is_measured_again_at_most_twice() {
        let (attempts, kept, steal) = pairs_with(&[0.01]).await;
        assert_eq!((attempts.len(), kept), (1, 0));
        assert_eq!(steal.note(), "host steal at most 1.0%");

        let (attempts, kept, steal) = pairs_with(&[0.20, 0.03]).await;
        assert_eq!((attempts.len(), kept), (2, 1));
        assert_eq!(
            steal.note(),
            "host steal at most 3.0% (1 pair(s) measured again for more than 5.0%)"
        );

        // The third attempt counts whatever the host took.
        let (attempts, kept, steal) = pairs_with(&[0.20, 0.10, 0.08, 0.0]).await;
        assert_eq!((attempts.len(), kept), (3, 2));
        assert_eq!(
            steal.note(),
            "host steal at most 8.0% (2 pair(s) measured again for more than 5.0%)"
        );
    }

    #[test]
    fn pgbench_output_gives_rate_and_latency() {
        let out = "transaction type: x.sql\nnumber of failed transactions: 0 (0.000%)\n\
                   latency average = 1.234 ms\n\
                   tps = 6480.5 (without initial connection time)\n";
        let run = Pgbench::parse("x", out).unwrap();
        assert_eq!(run.tps, 6480.5);
        assert_eq!(run.latency_ms, 1.234);
        let failed = out.replace("0 (0.000%)", "3 (0.100%)");
        assert!(Pgbench::parse("x", &failed).is_err());
        assert!(Pgbench::parse("x", "latency average = 1 ms\n").is_err());
    }
}
