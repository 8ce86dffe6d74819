//! What the CLI talks to: a Kafka cluster directly, or a worker over HTTP. Both answer with the
//! types of `shareworker::admin`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use shareworker::admin::{
    self, DeadLetterFilter, DeadLetterRecord, DiscardOptions, DiscardReport, DiscardRequest,
    EnqueueRequest, Enqueued, GroupConfigs, ReplayOptions, ReplayReport, ReplayRequest,
    StatusReport,
};
use shareworker::broker::BrokerAdmin;
use shareworker::{Config, KafkaBroker};

use crate::http::WorkerClient;

pub(crate) enum Target {
    Kafka {
        broker: Arc<dyn BrokerAdmin>,
        url: String,
    },
    Worker(WorkerClient),
}

impl Target {
    /// The worker at `worker`, else the Kafka cluster `broker` names, else the one the
    /// configuration names.
    pub(crate) async fn connect(
        broker: Option<&str>,
        worker: Option<&str>,
        token: Option<&str>,
        config_file: Option<&Path>,
    ) -> anyhow::Result<Self> {
        match (broker, worker) {
            (Some(_), Some(_)) => {
                bail!("both --broker and --worker are given: use one")
            }
            (None, Some(url)) => {
                return Ok(Target::Worker(WorkerClient::new(url)?.with_token(token)));
            }
            _ => {}
        }
        let (broker, config) = kafka_from_config(broker, config_file).await?;
        Ok(Target::Kafka {
            broker,
            url: config.broker,
        })
    }

    pub(crate) async fn enqueue(&self, job: &EnqueueRequest) -> anyhow::Result<Enqueued> {
        match self {
            Target::Kafka { broker, url } => admin::enqueue(&**broker, job).await.map_err(|e| {
                if e.is_unknown_topic() {
                    anyhow!(
                        "{e} on {url}: check the name, or create the topic first (kafka-topics.sh --create --topic {})",
                        job.topic
                    )
                } else {
                    anyhow!("{}", chain(&e))
                }
            }),
            Target::Worker(w) => w.post("/admin/enqueue", job).await.map_err(|e| {
                if e.to_string().contains("does not exist") {
                    e.context("check the topic name: `shareworker status` shows the topics the worker's groups read")
                } else {
                    e
                }
            }),
        }
    }

    /// Enqueues every job, in order: on Kafka in bulk (every topic checked first); through a
    /// worker one request per job.
    pub(crate) async fn enqueue_all(
        &self,
        jobs: &[EnqueueRequest],
    ) -> anyhow::Result<Vec<Enqueued>> {
        match self {
            Target::Kafka { broker, url } => {
                admin::enqueue_all(&**broker, jobs).await.map_err(|e| {
                    if e.is_unknown_topic() {
                        anyhow!(
                            "{e} on {url}: check the name, or create the topic first; nothing was enqueued"
                        )
                    } else {
                        anyhow!("{}", chain(&e))
                    }
                })
            }
            Target::Worker(_) => {
                let mut out = Vec::with_capacity(jobs.len());
                for job in jobs {
                    match self.enqueue(job).await {
                        Ok(w) => out.push(w),
                        Err(e) => {
                            return Err(e.context(format!(
                                "after {} of {} jobs were enqueued",
                                out.len(),
                                jobs.len()
                            )));
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    pub(crate) async fn status(&self, group: Option<&str>) -> anyhow::Result<StatusReport> {
        match self {
            Target::Kafka { broker, url } => match group {
                Some(g) => {
                    let status = admin::group_status(&**broker, g).await.map_err(|e| {
                        if e.is_unknown_group() {
                            anyhow!("{e} (on {url}): check the group id")
                        } else {
                            anyhow!("{}", chain(&e))
                        }
                    })?;
                    let mut report = StatusReport::default();
                    report.broker = broker.kind().to_owned();
                    report.groups = vec![status];
                    Ok(report)
                }
                None => admin::broker_status(&**broker)
                    .await
                    .map_err(|e| anyhow!("{}", chain(&e))),
            },
            Target::Worker(w) => match group {
                Some(g) => w.get("/status", &[("group", g.to_owned())]).await,
                None => w.get("/status", &[]).await,
            },
        }
    }

    pub(crate) async fn dead_letters(
        &self,
        topic: Option<&str>,
        filter: &DeadLetterFilter,
    ) -> anyhow::Result<Vec<DeadLetterRecord>> {
        match self {
            Target::Kafka { broker, .. } => {
                let topic = topic_needed(topic)?;
                admin::dead_letters(&**broker, topic, filter)
                    .await
                    .map_err(|e| anyhow!("{}", chain(&e)))
            }
            Target::Worker(w) => {
                let mut query = filter_query(filter);
                if let Some(t) = topic {
                    query.push(("topic", t.to_owned()));
                }
                w.get("/admin/dlq", &query).await
            }
        }
    }

    pub(crate) async fn replay(
        &self,
        topic: Option<&str>,
        filter: &DeadLetterFilter,
        options: ReplayOptions,
    ) -> anyhow::Result<Vec<ReplayReport>> {
        match self {
            Target::Kafka { broker, .. } => {
                let topic = topic_needed(topic)?;
                let report = admin::replay(&**broker, topic, filter, options)
                    .await
                    .map_err(|e| anyhow!("{}", chain(&e)))?;
                Ok(vec![report])
            }
            Target::Worker(w) => {
                let req = ReplayRequest::new(topic.map(str::to_owned), filter.clone(), options);
                w.post("/admin/dlq/replay", &req).await
            }
        }
    }

    pub(crate) async fn discard(
        &self,
        topic: Option<&str>,
        filter: &DeadLetterFilter,
        options: DiscardOptions,
    ) -> anyhow::Result<Vec<DiscardReport>> {
        match self {
            Target::Kafka { broker, .. } => {
                let topic = topic_needed(topic)?;
                let report = admin::discard(&**broker, topic, filter, options)
                    .await
                    .map_err(|e| anyhow!("{}", chain(&e)))?;
                Ok(vec![report])
            }
            Target::Worker(w) => {
                let req = DiscardRequest::new(topic.map(str::to_owned), filter.clone(), options);
                w.post("/admin/dlq/discard", &req).await
            }
        }
    }

    pub(crate) async fn group_configs(&self, group: &str) -> anyhow::Result<GroupConfigs> {
        match self {
            Target::Kafka { broker, .. } => admin::group_configs(&**broker, group)
                .await
                .map_err(|e| anyhow!("{}", chain(&e))),
            Target::Worker(w) => w.get(&group_path(group), &[]).await,
        }
    }

    pub(crate) async fn set_group_configs(
        &self,
        group: &str,
        configs: &[(String, String)],
    ) -> anyhow::Result<()> {
        match self {
            Target::Kafka { broker, .. } => broker
                .set_group_configs(group, configs)
                .await
                .map_err(|e| anyhow!("{}", chain(&e))),
            Target::Worker(w) => {
                let body = GroupConfigs::new(group, configs.to_vec());
                let _: GroupConfigs = w
                    .post(&group_path(group), &body)
                    .await
                    .context("the configs were not changed")?;
                Ok(())
            }
        }
    }
}

fn topic_needed(topic: Option<&str>) -> anyhow::Result<&str> {
    topic.ok_or_else(|| {
        anyhow!("name the dead-letter topic, e.g. `shareworker dlq list emails.dlq` (only a worker, through --worker, knows its own)")
    })
}

fn group_path(group: &str) -> String {
    format!("/admin/groups/{}/config", crate::http::encode(group))
}

fn filter_query(f: &DeadLetterFilter) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(p) = f.partition {
        q.push(("partition", p.to_string()));
    }
    if let Some(o) = f.from_offset {
        q.push(("from", o.to_string()));
    }
    if let Some(o) = f.to_offset {
        q.push(("to", o.to_string()));
    }
    if let Some(e) = &f.error_contains {
        q.push(("error", e.clone()));
    }
    if let Some(h) = &f.handler {
        q.push(("handler", h.clone()));
    }
    if let Some(l) = f.limit {
        q.push(("limit", l.to_string()));
    }
    q
}

/// An error with its causes: `a: b: c`.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The Kafka cluster `broker` names, else the one the configuration names, with the
/// configuration (its security settings apply to the connection).
pub(crate) async fn kafka_from_config(
    broker: Option<&str>,
    config_file: Option<&Path>,
) -> anyhow::Result<(Arc<dyn BrokerAdmin>, Config)> {
    let mut config = Config::load(config_file).map_err(|e| {
        anyhow!("{e}: fix the configuration, or give the broker with --broker kafka://host:port")
    })?;
    if let Some(url) = broker {
        if !url.starts_with("kafka://") {
            bail!(
                "--broker `{url}` is not a Kafka address: write kafka://host:port[,host:port]; to reach a worker on the embedded broker use --worker http://host:9464"
            );
        }
        config.broker = url.to_owned();
    }
    if config.broker == "embedded" {
        bail!(
            "no broker to talk to: the configured broker is `embedded`, which lives inside the worker process; reach that worker with --worker http://host:9464 (its http.address), or a Kafka cluster with --broker kafka://host:port"
        );
    }
    let url = config.broker.clone();
    let kafka = KafkaBroker::from_config(&config.broker, &config.kafka).await.map_err(|e| {
        anyhow!(
            "cannot reach the Kafka cluster at {url}: {}; check the address (--broker, or `broker` in shareworker.toml / SHAREWORKER_BROKER) and that the brokers are up",
            chain(&e)
        )
    })?;
    Ok((Arc::new(kafka), config))
}
