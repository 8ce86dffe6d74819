//! Where configuration comes from (defaults, code, file, environment), in which order, and its checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::Error;

use super::*;

/// Where configuration comes from, beyond the defaults and the code.
#[derive(Clone, Debug)]
pub(crate) enum Sources {
    /// `shareworker.toml` (or `$SHAREWORKER_CONFIG`) and `SHAREWORKER_*`.
    Standard,
    /// Only what the code says (tests).
    CodeOnly,
    /// A given file, then the environment.
    File(PathBuf),
    /// A figment the user assembled, layered over defaults and code.
    Custom(Box<Figment>),
}

/// A handler as the configuration needs to know it.
pub(crate) struct Declared<'a> {
    pub(crate) name: &'a str,
    pub(crate) topic: &'a str,
    pub(crate) overrides: &'a HandlerOverrides,
}

/// Loads and checks the configuration for these handlers.
pub(crate) fn load(
    base: &Config,
    handlers: &[Declared<'_>],
    sources: &Sources,
) -> Result<Config, Error> {
    let mut defaults = base.clone();
    defaults.handlers.clear();
    let mut code: BTreeMap<String, &HandlerOverrides> = BTreeMap::new();
    for h in handlers {
        defaults
            .handlers
            .insert(h.name.to_owned(), HandlerConfig::defaults(h.name, h.topic));
        code.insert(h.name.to_owned(), h.overrides);
    }
    #[derive(Serialize)]
    struct CodeLayer<'a> {
        handlers: BTreeMap<String, &'a HandlerOverrides>,
    }
    let mut figment = Figment::from(Serialized::defaults(&defaults))
        .merge(Serialized::defaults(CodeLayer { handlers: code }));
    figment = match sources {
        Sources::CodeOnly => figment,
        Sources::Standard | Sources::File(_) => {
            with_file_and_env(figment, sources.file()?.as_deref())
        }
        Sources::Custom(custom) => figment.merge((**custom).clone()),
    };
    check_handler_names(&figment, handlers)?;
    let config: Config = figment.extract().map_err(config_error)?;
    validate(&config)?;
    Ok(config)
}

impl Sources {
    /// The configuration file these sources read, if any: a file named explicitly (the
    /// builder's, the CLI's `--config`, or `SHAREWORKER_CONFIG`) must exist; the default
    /// `shareworker.toml` is looked for in the working directory and its parents, and may be
    /// absent.
    ///
    /// # Errors
    /// When a file named explicitly does not exist or is not a file.
    pub(crate) fn file(&self) -> Result<Option<PathBuf>, Error> {
        match self {
            Sources::CodeOnly | Sources::Custom(_) => Ok(None),
            Sources::File(path) => named_file(path, "the configuration file").map(Some),
            Sources::Standard => match std::env::var_os(CONFIG_VAR).filter(|v| !v.is_empty()) {
                Some(path) => named_file(
                    Path::new(&path),
                    &format!("the configuration file named by {CONFIG_VAR}"),
                )
                .map(Some),
                None => Ok(default_file()),
            },
        }
    }

    /// Where the configuration comes from, for the log line at start.
    pub(crate) fn describe(&self, file: Option<&Path>) -> String {
        let env = || {
            let mut names: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .filter(|k| k.starts_with(ENV_PREFIX) && k != CONFIG_VAR)
                .collect();
            names.sort();
            if names.is_empty() {
                "no SHAREWORKER_* variables".to_owned()
            } else {
                names.join(", ")
            }
        };
        match (self, file) {
            (Sources::CodeOnly, _) => "the code only (no file, no environment)".to_owned(),
            (Sources::Custom(_), _) => "a figment given in the code".to_owned(),
            (_, Some(f)) => format!("{}, then {}", f.display(), env()),
            (_, None) => format!("no {DEFAULT_FILE} (defaults and code), then {}", env()),
        }
    }
}

/// `path`, checked to be an existing file; `what` starts the error message.
pub(crate) fn named_file(path: &Path, what: &str) -> Result<PathBuf, Error> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(path.to_owned()),
        Ok(_) => Err(Error::config(format!(
            "{what} `{}` is not a file",
            path.display()
        ))),
        Err(e) => {
            let cwd = std::env::current_dir()
                .map_or_else(|_| "?".to_owned(), |d| d.display().to_string());
            Err(Error::config(format!(
                "{what} `{}` cannot be read ({e}; the working directory is {cwd}): a configuration file named explicitly must exist; name none to run on {DEFAULT_FILE} if present, else the defaults",
                path.display()
            )))
        }
    }
}

/// Why `broker = "kafka://..."` does not work in a build without the `kafka` feature.
#[cfg(not(feature = "kafka"))]
pub(crate) const NO_KAFKA: &str = "this build of shareworker has no Kafka client: enable the cargo feature `kafka` of the `shareworker` crate (on by default) to use kafka://host:port";

/// `shareworker.toml` in the working directory or the nearest of its parents.
pub(crate) fn default_file() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(DEFAULT_FILE))
        .find(|f| f.is_file())
}

pub(crate) fn with_file_and_env(figment: Figment, file: Option<&Path>) -> Figment {
    let figment = match file {
        Some(f) => figment.merge(Toml::file_exact(f)),
        None => figment,
    };
    let figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]));
    #[cfg(feature = "kafka")]
    let figment = figment.merge(shareworker_kafka::raw_env_credentials(ENV_PREFIX));
    figment
}

/// `log.format` from `shareworker.toml` (or `$SHAREWORKER_CONFIG`) and the environment, read
/// before the rest of the configuration so the first log lines already have the right format.
/// A bad value, or a missing file, is reported later, when the whole configuration is loaded.
pub(crate) fn standard_log_format() -> LogFormat {
    let file = Sources::Standard.file().ok().flatten();
    with_file_and_env(Figment::new(), file.as_deref())
        .extract_inner::<LogFormat>("log.format")
        .unwrap_or_default()
}

pub(crate) fn config_error(e: figment::Error) -> Error {
    let mut msgs = Vec::new();
    for err in e {
        let key = if err.path.is_empty() {
            String::new()
        } else {
            format!("`{}`: ", err.path.join("."))
        };
        let source = match &err.metadata {
            Some(m) => match &err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                Some(src) => format!(" (from {} {src})", m.name),
                None => format!(" (from {})", m.name),
            },
            None => String::new(),
        };
        msgs.push(format!("{key}{}{source}", err.kind));
    }
    Error::config(format!("invalid configuration: {}", msgs.join("; ")))
}

pub(crate) fn check_handler_names(
    figment: &Figment,
    handlers: &[Declared<'_>],
) -> Result<(), Error> {
    let Ok(dict) = figment.extract_inner::<figment::value::Dict>("handlers") else {
        return Ok(());
    };
    for name in dict.keys() {
        if !handlers.iter().any(|h| h.name == name) {
            let known: Vec<&str> = handlers.iter().map(|h| h.name).collect();
            return Err(Error::config(format!(
                "`handlers.{name}`: this worker has no handler named `{name}`; its handlers are: {}",
                if known.is_empty() {
                    "(none)".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(())
}

/// Names in `a,b` or `a, b`, without empty ones.
pub(crate) fn split_names(list: &str) -> impl Iterator<Item = String> + '_ {
    list.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
}

/// A list of names, or one string of comma-separated names (as the environment gives it).
pub(crate) fn names_or_list<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Names {
        List(Vec<String>),
        One(String),
    }
    Ok(match Option::<Names>::deserialize(d)? {
        None => None,
        Some(Names::List(l)) => Some(l.iter().flat_map(|n| split_names(n)).collect()),
        Some(Names::One(s)) => Some(split_names(&s).collect()),
    })
}

/// Checks ranges; each message names the key and what is allowed.
pub(crate) fn validate(config: &Config) -> Result<(), Error> {
    let bad = |key: String, what: String| Err(Error::config(format!("`{key}`: {what}")));
    if config.concurrency == 0 {
        return bad("concurrency".into(), "must be at least 1, got 0".into());
    }
    if config.shutdown_grace > Duration::from_secs(24 * 3600) {
        return bad("shutdown_grace".into(), "must be at most 24h".into());
    }
    if config.max_lease < Duration::from_secs(1) {
        return bad("max_lease".into(), "must be at least 1s".into());
    }
    if config.http.enabled && config.http.address.parse::<std::net::SocketAddr>().is_err() {
        return bad(
            "http.address".into(),
            format!(
                "must be an IP address and port such as 0.0.0.0:9464, got `{}`",
                config.http.address
            ),
        );
    }
    validate_http(&config.http)?;
    if let Err(e) = config.autoscale.validate() {
        return Err(Error::config(e));
    }
    if config.embedded.partitions < 1 {
        return bad(
            "embedded.partitions".into(),
            format!("must be at least 1, got {}", config.embedded.partitions),
        );
    }
    if config.embedded.max_message_bytes == 0 {
        return bad(
            "embedded.max_message_bytes".into(),
            "must be at least 1 (bytes), got 0".into(),
        );
    }
    if !(config.broker == "embedded" || config.broker.starts_with("kafka://")) {
        return bad(
            "broker".into(),
            format!(
                "`{}` is not a broker; use \"embedded\" or \"kafka://host:port[,host:port...]\"",
                config.broker
            ),
        );
    }
    #[cfg(feature = "kafka")]
    config.kafka.validate_for(&config.broker)?;
    #[cfg(not(feature = "kafka"))]
    if config.broker.starts_with("kafka://") {
        return bad("broker".into(), NO_KAFKA.into());
    }
    for (name, h) in &config.handlers {
        let k = |field: &str| format!("handlers.{name}.{field}");
        if h.topic.is_empty() {
            return bad(k("topic"), "must not be empty".into());
        }
        if h.group.is_empty() {
            return bad(k("group"), "must not be empty".into());
        }
        if h.concurrency == 0 {
            return bad(k("concurrency"), "must be at least 1, got 0".into());
        }
        if h.max_attempts == Some(0) {
            return bad(k("max_attempts"), "must be at least 1, got 0".into());
        }
        let b = &h.backoff;
        let rules = shareworker_core::retry::check_backoff(
            Some(b.initial),
            Some(b.max),
            Some(b.multiplier),
            Some(b.jitter),
        );
        if let Some(p) = rules.into_iter().next() {
            return bad(k(&format!("backoff.{}", p.part)), p.message);
        }
        if h.timeout.is_some_and(|t| t.is_zero()) {
            return bad(k("timeout"), "must be more than 0".into());
        }
        if h.prefetch_max_records == 0 {
            return bad(k("prefetch_max_records"), "must be at least 1".into());
        }
        if h.prefetch_max_bytes == 0 {
            return bad(k("prefetch_max_bytes"), "must be at least 1".into());
        }
        if let DeadLetter::Topic(t) = &h.dead_letter
            && *t == h.topic
        {
            return bad(
                k("dead_letter"),
                "must differ from the handler's own topic".into(),
            );
        }
    }
    Ok(())
}
