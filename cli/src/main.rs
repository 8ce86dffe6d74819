//! `shareworker`: the operator CLI of shareworker.
//!
//! It reaches a Kafka cluster directly (`--broker kafka://host:port`, or the `broker` of the
//! worker's own configuration: `shareworker.toml`, `SHAREWORKER_BROKER`), or a running worker
//! through its HTTP endpoint (`--worker http://host:9464`), which is the only way to reach a
//! worker's embedded broker.
//!
//! ```text
//! shareworker enqueue --topic emails '{"to": "ada@example.com"}'
//! shareworker enqueue --topic emails --lines < jobs.ndjson
//! shareworker status [GROUP]
//! shareworker dlq list emails.dlq --error timeout
//! shareworker dlq replay emails.dlq --dry-run
//! shareworker dlq discard emails.dlq --to 41 --reason "customer left"
//! shareworker group config mailer --set share.delivery.count.limit=3
//! ```

mod http;
mod print;
mod target;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::value::RawValue;
use shareworker::admin::{DeadLetterFilter, DiscardOptions, EnqueueRequest, ReplayOptions};

use target::Target;

/// Operate shareworker: enqueue jobs, see share groups, list and replay dead letters, and read
/// or change share-group configs, on Kafka or through a worker's HTTP endpoint.
#[derive(Parser, Debug)]
#[command(name = "shareworker", version, about, long_about = None)]
struct Cli {
    /// The Kafka cluster, `kafka://host:port[,host:port]` (default: `broker` from
    /// shareworker.toml or SHAREWORKER_BROKER, as the worker reads it).
    #[arg(long, global = true, value_name = "URL")]
    broker: Option<String>,

    /// A running worker's HTTP endpoint, `http://host:port` (its `http.address`); the way to a
    /// worker on the embedded broker.
    #[arg(long, global = true, value_name = "URL")]
    worker: Option<String>,

    /// The worker's admin token (its `http.admin_token`), sent with --worker as `Authorization:
    /// Bearer`; the routes that change things (enqueue, replay, group config --set) need it.
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "SHAREWORKER_HTTP__ADMIN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// The configuration file to read instead of shareworker.toml.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enqueue one job (or, with --lines, one per line): its JSON payload from the argument,
    /// or from stdin, written as given, byte for byte.
    Enqueue(EnqueueArgs),
    /// Show share groups: members, per-partition start offset, lag and in-flight records,
    /// delivery count limit and lock duration.
    Status {
        /// The group (default: every share group).
        group: Option<String>,
    },
    /// Dead letters: list them, replay them to their original topic.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Share groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Serve share lag and the replica hint of groups on /metrics, without running handlers:
    /// the always-on source that lets an autoscaler wake workers scaled to zero.
    Exporter(ExporterArgs),
}

#[derive(Args, Debug)]
struct ExporterArgs {
    /// A group to watch, `GROUP=TOPIC[,TOPIC]`; repeat for more.
    #[arg(long = "group", short, value_name = "GROUP=TOPICS", required = true)]
    groups: Vec<String>,
    /// The mean handler time to plan with, such as `200ms` (the workers measure theirs).
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    handler_time: String,
    /// Handlers one replica of the worker runs at once per group.
    #[arg(long, default_value_t = 32)]
    concurrency: u32,
    /// Where to serve /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:9464")]
    listen: String,
}

#[derive(Args, Debug)]
struct EnqueueArgs {
    /// The topic to enqueue on (it must exist).
    #[arg(long, short)]
    topic: String,
    /// The job's key.
    #[arg(long, short)]
    key: Option<String>,
    /// A header, `name=value`; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// A fixed partition instead of one chosen from the key.
    #[arg(long)]
    partition: Option<i32>,
    /// The input is NDJSON: one job per line (blank lines skipped), all checked before any is
    /// written, then written in bulk.
    #[arg(long)]
    lines: bool,
    /// The payload, one JSON value (with --lines, one per line); `-` or nothing reads it from
    /// stdin.
    #[arg(value_name = "JSON")]
    payload: Option<String>,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead letters with their error headers.
    List(DlqArgs),
    /// Send dead letters back to their original topic. Each is replayed once: a dead letter
    /// replayed before, discarded, or the dead letter of a replayed job, is skipped unless
    /// --force.
    Replay {
        #[command(flatten)]
        dlq: DlqArgs,
        /// Show what would be replayed; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay dead letters that were replayed or discarded before too.
        #[arg(long)]
        force: bool,
        /// Without a topic: every dead-letter topic of the worker (--worker).
        #[arg(long, conflicts_with = "topic")]
        all: bool,
    },
    /// Drop dead letters on purpose: each gets a discard marker in the dead-letter topic (with
    /// --reason), is listed as discarded and never replayed unless forced.
    Discard {
        #[command(flatten)]
        dlq: DlqArgs,
        /// Show what would be discarded; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Without a topic: every dead-letter topic of the worker (--worker).
        #[arg(long, conflicts_with = "topic")]
        all: bool,
        /// Why, recorded with each discard.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

#[derive(Args, Debug)]
struct DlqArgs {
    /// The dead-letter topic, such as `emails.dlq` (default through --worker: every
    /// dead-letter topic of the worker's handlers).
    topic: Option<String>,
    /// Only this partition of the dead-letter topic.
    #[arg(long)]
    partition: Option<i32>,
    /// Only dead letters at or after this offset.
    #[arg(long, value_name = "OFFSET")]
    from: Option<i64>,
    /// Only dead letters at or before this offset.
    #[arg(long, value_name = "OFFSET")]
    to: Option<i64>,
    /// Only dead letters whose error contains this text.
    #[arg(long, value_name = "TEXT")]
    error: Option<String>,
    /// Only dead letters of this handler.
    #[arg(long)]
    handler: Option<String>,
    /// At most this many.
    #[arg(long)]
    limit: Option<usize>,
}

impl DlqArgs {
    fn filter(&self) -> DeadLetterFilter {
        let mut f = DeadLetterFilter::default();
        f.partition = self.partition;
        f.from_offset = self.from;
        f.to_offset = self.to;
        f.error_contains = self.error.clone();
        f.handler = self.handler.clone();
        f.limit = self.limit;
        f
    }
}

#[derive(Subcommand, Debug)]
enum GroupCommand {
    /// Show a share group's configs, or set some with --set.
    Config {
        /// The group id.
        group: String,
        /// A config to set, `name=value` (share.auto.offset.reset, share.delivery.count.limit,
        /// share.record.lock.duration.ms, share.partition.max.record.locks, ...); repeat for
        /// more. All are set, or none.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        broker,
        worker,
        token,
        config,
        json,
        command,
    } = cli;
    // Bad input is refused in each arm before anything is reached.
    let connect = || {
        Target::connect(
            broker.as_deref(),
            worker.as_deref(),
            token.as_deref(),
            config.as_deref(),
        )
    };
    match command {
        Command::Enqueue(args) => {
            let jobs = enqueue_requests(&args)?;
            let target = connect().await?;
            if args.lines {
                let written = target.enqueue_all(&jobs).await?;
                print::enqueued_all(&written, json)
            } else {
                let job = jobs.first().context("no job given")?;
                let written = target.enqueue(job).await?;
                print::enqueued(&written, json)
            }
        }
        Command::Status { group } => {
            let report = connect().await?.status(group.as_deref()).await?;
            print::status(&report, json)
        }
        Command::Dlq(DlqCommand::List(args)) => {
            let letters = connect()
                .await?
                .dead_letters(args.topic.as_deref(), &args.filter())
                .await?;
            print::dead_letters(&letters, json)
        }
        Command::Dlq(DlqCommand::Replay {
            dlq,
            dry_run,
            force,
            all,
        }) => {
            every_topic_on_purpose(dlq.topic.as_deref(), all, dry_run, "replay")?;
            let options = ReplayOptions::default().dry_run(dry_run).force(force);
            let reports = connect()
                .await?
                .replay(dlq.topic.as_deref(), &dlq.filter(), options)
                .await?;
            print::replays(&reports, json)
        }
        Command::Dlq(DlqCommand::Discard {
            dlq,
            dry_run,
            all,
            reason,
        }) => {
            every_topic_on_purpose(dlq.topic.as_deref(), all, dry_run, "discard")?;
            let mut options = DiscardOptions::default().dry_run(dry_run);
            if let Some(r) = reason {
                options = options.reason(r);
            }
            let reports = connect()
                .await?
                .discard(dlq.topic.as_deref(), &dlq.filter(), options)
                .await?;
            print::discards(&reports, json)
        }
        Command::Exporter(args) => {
            if worker.is_some() {
                bail!("the exporter reads the share lag from Kafka: give --broker, not --worker");
            }
            exporter(&args, broker.as_deref(), config.as_deref()).await
        }
        Command::Group(GroupCommand::Config { group, set }) => {
            let pairs = set
                .iter()
                .map(|s| name_value(s, "--set", "share.delivery.count.limit=3"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let target = connect().await?;
            if !pairs.is_empty() {
                target.set_group_configs(&group, &pairs).await?;
            }
            let configs = target.group_configs(&group).await?;
            print::group_configs(&configs, !pairs.is_empty(), json)
        }
    }
}

/// A change to every dead-letter topic at once must be asked for: without a topic, `--all`
/// (a dry run writes nothing, so it may go without).
fn every_topic_on_purpose(
    topic: Option<&str>,
    all: bool,
    dry_run: bool,
    verb: &str,
) -> anyhow::Result<()> {
    if topic.is_none() && !all && !dry_run {
        bail!(
            "name the dead-letter topic to {verb}, e.g. `shareworker dlq {verb} emails.dlq`, or pass --all to {verb} in every dead-letter topic of the worker (--dry-run shows what that would do)"
        );
    }
    Ok(())
}

/// The jobs to enqueue, checked: each payload is one JSON value (kept byte for byte), the
/// headers are `name=value`.
fn enqueue_requests(args: &EnqueueArgs) -> anyhow::Result<Vec<EnqueueRequest>> {
    if args.topic.trim().is_empty() {
        bail!("--topic is empty: name the topic to enqueue on, e.g. --topic emails");
    }
    let text = match args.payload.as_deref() {
        Some(t) if t != "-" => t.to_owned(),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the job from stdin")?;
            String::from_utf8(buf)
                .map_err(|e| anyhow::anyhow!("the input is not UTF-8 text ({e}): JSON is UTF-8"))?
        }
    };
    if text.trim().is_empty() {
        bail!(
            "no job given: pass its JSON payload as the argument, e.g. '{{\"to\": \"ada@example.com\"}}', or on stdin"
        );
    }
    let mut headers = Vec::new();
    for h in &args.headers {
        headers.push(name_value(h, "--header", "trace-id=42")?);
    }
    let job = |payload: Box<RawValue>| {
        let mut job = EnqueueRequest::new(args.topic.trim(), payload);
        if let Some(k) = &args.key {
            job = job.key(k.clone());
        }
        for (name, value) in &headers {
            job = job.header(name.clone(), value.clone());
        }
        if let Some(p) = args.partition {
            job = job.partition(p);
        }
        job
    };
    if !args.lines {
        let payload = RawValue::from_string(text).map_err(|e| {
            anyhow::anyhow!(
                "the job is not valid JSON ({e}): pass one JSON value, e.g. '{{\"to\": \"ada@example.com\"}}' (quote it for the shell), as the argument or on stdin; --lines reads one job per line"
            )
        })?;
        return Ok(vec![job(payload)]);
    }
    let mut jobs = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let payload = RawValue::from_string(line.to_owned()).map_err(|e| {
            anyhow::anyhow!(
                "line {} is not valid JSON ({e}); nothing was enqueued: with --lines, each line is one job's JSON value",
                i + 1
            )
        })?;
        jobs.push(job(payload));
    }
    Ok(jobs)
}

fn name_value(s: &str, flag: &str, example: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => bail!("{flag} `{s}` is not NAME=VALUE, e.g. {flag} {example}"),
    }
}

/// `shareworker exporter`: serves the groups' lag and replica hints until SIGINT or SIGTERM.
async fn exporter(
    args: &ExporterArgs,
    broker: Option<&str>,
    config_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let handler_time = humantime::parse_duration(&args.handler_time).with_context(|| {
        format!(
            "--handler-time `{}` is not a duration; write it like 200ms, 2s or 1m",
            args.handler_time
        )
    })?;
    let mut groups = Vec::new();
    for g in &args.groups {
        let (group, topics) = g
            .split_once('=')
            .filter(|(g, t)| !g.is_empty() && !t.is_empty())
            .with_context(|| {
                format!("--group `{g}`: write it as GROUP=TOPIC[,TOPIC], such as send_email=emails")
            })?;
        let topics: Vec<String> = topics.split(',').map(str::to_owned).collect();
        groups.push(shareworker::exporter::ExportedGroup::new(
            group,
            topics,
            handler_time,
            args.concurrency,
        ));
    }
    let (broker, config) = target::kafka_from_config(broker, config_file).await?;
    let mut exporter = shareworker::exporter::Exporter::new(broker, config.autoscale.clone());
    for g in groups {
        exporter = exporter.group(g);
    }
    eprintln!(
        "exporting share lag and replica hints on http://{}/metrics",
        args.listen
    );
    exporter.serve(&args.listen, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
