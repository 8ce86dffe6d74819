//! Tests of loading and checking the configuration.

use std::path::PathBuf;

use super::*;

fn declared<'a>(o: &'a HandlerOverrides) -> Vec<Declared<'a>> {
    vec![Declared {
        name: "send_email",
        topic: "emails",
        overrides: o,
    }]
}

#[cfg(not(feature = "kafka"))]
#[test]
fn a_kafka_broker_without_the_kafka_feature_is_an_error_naming_the_feature() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SHAREWORKER_BROKER", "kafka://127.0.0.1:9092");
        let err = Config::load(None).expect_err("this build has no Kafka client");
        let text = err.to_string();
        assert!(err.is_config(), "{err:?}");
        assert!(text.contains("`broker`"), "{text}");
        assert!(text.contains("cargo feature `kafka`"), "{text}");
        Ok(())
    });
}

#[test]
fn layers_apply_in_order_defaults_code_file_env() {
    figment::Jail::expect_with(|jail| {
        let code = HandlerOverrides {
            concurrency: Some(4),
            max_attempts: Some(3),
            timeout: Some(Duration::from_secs(10)),
            ..HandlerOverrides::default()
        };
        // Defaults and code only.
        let c = load(&Config::default(), &declared(&code), &Sources::Standard)
            .map_err(|e| e.to_string())?;
        let h = &c.handlers["send_email"];
        assert_eq!(h.concurrency, 4, "code beats defaults");
        assert_eq!(
            h.group, "send_email",
            "group defaults to the handler's name"
        );
        assert_eq!(h.dead_letter, DeadLetter::Topic("emails.dlq".into()));
        assert_eq!(
            h.prefetch,
            Prefetch::Auto,
            "untouched keys keep their default"
        );

        // The file beats the code.
        jail.create_file(
            "shareworker.toml",
            r#"
            concurrency = 64
            [handlers.send_email]
            concurrency = 6
            timeout = "2m"
            backoff = { initial = "250ms" }
            "#,
        )?;
        let c = load(&Config::default(), &declared(&code), &Sources::Standard)
            .map_err(|e| e.to_string())?;
        let h = &c.handlers["send_email"];
        assert_eq!(c.concurrency, 64);
        assert_eq!(h.concurrency, 6, "file beats code");
        assert_eq!(h.timeout, Some(Duration::from_secs(120)));
        assert_eq!(h.backoff.initial, Duration::from_millis(250));
        assert_eq!(
            h.backoff.max,
            Duration::from_secs(300),
            "nested default kept"
        );
        assert_eq!(
            h.max_attempts,
            Some(3),
            "code value kept where the file is silent"
        );

        // The environment beats the file.
        jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__CONCURRENCY", "9");
        jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__DEAD_LETTER", "off");
        jail.set_env("SHAREWORKER_SHUTDOWN_GRACE", "5s");
        let c = load(&Config::default(), &declared(&code), &Sources::Standard)
            .map_err(|e| e.to_string())?;
        let h = &c.handlers["send_email"];
        assert_eq!(h.concurrency, 9, "env beats file");
        assert_eq!(h.dead_letter, DeadLetter::Off);
        assert_eq!(c.shutdown_grace, Duration::from_secs(5));
        Ok(())
    });
}

#[test]
fn a_file_named_explicitly_must_exist_the_default_may_be_absent() {
    figment::Jail::expect_with(|jail| {
        let code = HandlerOverrides::default();
        // No shareworker.toml: defaults.
        let c = load(&Config::default(), &declared(&code), &Sources::Standard)
            .map_err(|e| e.to_string())?;
        assert_eq!(c.broker, "embedded");
        assert_eq!(Sources::Standard.file().map_err(|e| e.to_string())?, None);

        // SHAREWORKER_CONFIG naming a missing file is an error, not the defaults.
        jail.set_env("SHAREWORKER_CONFIG", "nope.toml");
        let err = load(&Config::default(), &declared(&code), &Sources::Standard)
            .expect_err("a missing file named by SHAREWORKER_CONFIG");
        let text = err.to_string();
        assert!(
            text.contains(
                "the configuration file named by SHAREWORKER_CONFIG `nope.toml` cannot be read"
            ),
            "{text}"
        );
        assert!(text.contains("must exist"), "{text}");
        let err = Config::load(None).expect_err("Config::load reads SHAREWORKER_CONFIG too");
        assert!(err.to_string().contains("nope.toml"), "{err}");
        assert_eq!(
            standard_log_format(),
            LogFormat::Text,
            "the early read goes on"
        );

        // Once it exists, it is read.
        jail.create_file("nope.toml", "[embedded]\npartitions = 7")?;
        let c = load(&Config::default(), &declared(&code), &Sources::Standard)
            .map_err(|e| e.to_string())?;
        assert_eq!(c.embedded.partitions, 7);
        jail.clear_env();

        // A file given in the code (or the CLI's --config) must exist too; a directory is
        // not a file.
        let missing = Sources::File(PathBuf::from("missing.toml"));
        let err = load(&Config::default(), &declared(&code), &missing)
            .expect_err("a missing explicit file");
        assert!(
            err.to_string().contains("`missing.toml` cannot be read"),
            "{err}"
        );
        let err = Config::load(Some(Path::new("missing.toml"))).expect_err("Config::load");
        assert!(err.to_string().contains("missing.toml"), "{err}");
        std::fs::create_dir("conf.d").map_err(|e| e.to_string())?;
        let err = Config::load(Some(Path::new("conf.d"))).expect_err("a directory");
        assert!(err.to_string().contains("is not a file"), "{err}");

        // The default file is found in a parent directory too, and named in the log.
        jail.create_file("shareworker.toml", "concurrency = 7")?;
        std::env::set_current_dir("conf.d").map_err(|e| e.to_string())?;
        let c = load(&Config::default(), &declared(&code), &Sources::Standard)
            .map_err(|e| e.to_string())?;
        assert_eq!(c.concurrency, 7);
        let file = Sources::Standard.file().map_err(|e| e.to_string())?;
        let said = Sources::Standard.describe(file.as_deref());
        assert!(said.contains("shareworker.toml, then"), "{said}");
        Ok(())
    });
}

#[test]
fn a_timeout_set_in_code_can_be_turned_off() {
    figment::Jail::expect_with(|jail| {
        let code = HandlerOverrides {
            timeout: Some(Duration::from_secs(10)),
            ..HandlerOverrides::default()
        };
        let timeout = || {
            load(&Config::default(), &declared(&code), &Sources::Standard)
                .map(|c| c.handlers["send_email"].timeout)
                .map_err(|e| e.to_string())
        };
        assert_eq!(timeout()?, Some(Duration::from_secs(10)), "the code's");
        jail.create_file(
            "shareworker.toml",
            "[handlers.send_email]\ntimeout = \"off\"",
        )?;
        assert_eq!(timeout()?, None, "off in the file");
        jail.create_file("shareworker.toml", "")?;
        jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__TIMEOUT", "off");
        assert_eq!(timeout()?, None, "off in the environment");
        jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__TIMEOUT", "3s");
        assert_eq!(timeout()?, Some(Duration::from_secs(3)));
        jail.set_env("SHAREWORKER_HANDLERS__SEND_EMAIL__TIMEOUT", "true");
        let err = timeout().expect_err("true is no duration");
        assert!(err.contains("timeout") && err.contains("\"off\""), "{err}");
        Ok(())
    });
}

#[test]
fn bad_values_name_the_key_and_what_is_allowed() {
    figment::Jail::expect_with(|jail| {
        let code = HandlerOverrides::default();
        let cases = [
            (
                "[handlers.send_email]\nconcurrency = 0",
                "handlers.send_email.concurrency",
                "at least 1",
            ),
            (
                "[handlers.send_email]\ntimeout = \"soon\"",
                "handlers.send_email.timeout",
                "\"30s\"",
            ),
            (
                "[handlers.send_email]\nconcurency = 3",
                "concurency",
                "unknown field",
            ),
            (
                "[handlers.send_mail]\nconcurrency = 3",
                "handlers.send_mail",
                "send_email",
            ),
            (
                "[handlers.send_email.backoff]\njitter = 1.5",
                "backoff.jitter",
                "between 0.0 and 1.0",
            ),
            (
                "[handlers.send_email.backoff]\nmultiplier = 0.5",
                "backoff.multiplier",
                "at least 1.0",
            ),
            ("broker = \"rabbitmq://x\"", "broker", "kafka://"),
            (
                "[embedded]\nmax_message_bytes = 0",
                "embedded.max_message_bytes",
                "at least 1",
            ),
            ("shutdown_grace = 30", "shutdown_grace", "no unit"),
            (
                "[handlers.send_email]\ndead_letter = \"emails\"",
                "dead_letter",
                "differ",
            ),
        ];
        for (file, key, hint) in cases {
            jail.create_file("shareworker.toml", file)?;
            let err = load(&Config::default(), &declared(&code), &Sources::Standard)
                .expect_err(&format!("tried {file:?}: must be refused"));
            let msg = err.to_string();
            assert!(err.is_config(), "tried {file:?}: {msg}");
            assert!(
                msg.contains(key),
                "tried {file:?}: message should name `{key}`: {msg}"
            );
            assert!(
                msg.contains(hint),
                "tried {file:?}: message should say `{hint}`: {msg}"
            );
        }
        Ok(())
    });
}

#[test]
fn backoff_follows_the_formula() {
    let b = BackoffConfig {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        multiplier: 3.0,
        jitter: 0.5,
    };
    assert_eq!(b.base_delay(1), Duration::from_millis(100));
    assert_eq!(b.base_delay(2), Duration::from_millis(300));
    assert_eq!(b.base_delay(3), Duration::from_millis(900));
    assert_eq!(b.base_delay(4), Duration::from_secs(1));
    for _ in 0..100 {
        let d = b.delay(2);
        assert!(
            d >= Duration::from_millis(150) && d <= Duration::from_millis(300),
            "{d:?}"
        );
    }
}

#[test]
fn group_settings_come_from_the_code_the_file_and_the_environment() {
    figment::Jail::expect_with(|jail| {
        let code = HandlerOverrides::default();
        let mut base = Config::default();
        base.groups.insert(
            "send_email".into(),
            crate::broker::GroupConfig::default()
                .max_record_locks(500)
                .into(),
        );
        jail.create_file(
            "shareworker.toml",
            r#"
            [groups.send_email]
            start_from = "earliest"
            assignment_interval = "100ms"
            lock_duration = "45s"
            "#,
        )?;
        jail.set_env("SHAREWORKER_GROUPS__SEND_EMAIL__DELIVERY_COUNT_LIMIT", "8");
        let c = load(&base, &declared(&code), &Sources::Standard).map_err(|e| e.to_string())?;
        let g = &c.groups["send_email"];
        let want = crate::broker::GroupConfig::default()
            .start_from(crate::broker::StartFrom::Earliest)
            .delivery_count_limit(8)
            .lock_duration(Duration::from_secs(45))
            .max_record_locks(500)
            .assignment_interval(Duration::from_millis(100));
        assert_eq!(
            *g,
            want.clone().into(),
            "code, file and environment together"
        );
        assert_eq!(g.to_group_config(), want, "and back");
        assert_eq!(
            g.describe(),
            "share.auto.offset.reset=earliest, share.delivery.count.limit=8, share.record.lock.duration.ms=45000, share.partition.max.record.locks=500, share.assignment.interval.ms=100"
        );
        Ok(())
    });
}

#[test]
fn bad_group_settings_name_the_key() {
    for (toml, says) in [
        (
            "[groups.g]\nstart_from = \"oldest\"",
            "`groups.g.start_from`",
        ),
        ("[groups.g]\nlock_duration = 30", "has no unit"),
        (
            "[groups.g]\nassignment_interval = \"soon\"",
            "`groups.g.assignment_interval`",
        ),
        (
            "[groups.g]\ndelivery_count_limit = -1",
            "`groups.g.delivery_count_limit`",
        ),
        ("[groups.g]\nsession_timeout = \"45s\"", "unknown field"),
    ] {
        figment::Jail::expect_with(|jail| {
            jail.create_file("shareworker.toml", toml)?;
            let code = HandlerOverrides::default();
            let err =
                load(&Config::default(), &declared(&code), &Sources::Standard).expect_err(toml);
            assert!(err.is_config(), "{err:?}");
            assert!(err.to_string().contains(says), "{toml}: {err}");
            Ok(())
        });
    }
}
