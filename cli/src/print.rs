//! What the CLI prints: text for people, or `--json`.

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use shareworker::admin::{
    DeadLetterRecord, DiscardReport, Enqueued, GroupConfigs, Payload, ReplayReport, StatusReport,
};

fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn enqueued(e: &Enqueued, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(e);
    }
    println!("enqueued {e}");
    Ok(())
}

pub(crate) fn enqueued_all(written: &[Enqueued], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&written);
    }
    match (written.first(), written.last()) {
        (Some(first), Some(last)) if written.len() > 1 => {
            println!("enqueued {} jobs: {first} .. {last}", written.len());
        }
        (Some(one), _) => println!("enqueued {one}"),
        _ => println!("enqueued nothing: no line had a job"),
    }
    Ok(())
}

fn millis(ms: u64) -> String {
    humantime::format_duration(Duration::from_millis(ms)).to_string()
}

fn time(ms: i64) -> String {
    u64::try_from(ms).map_or_else(
        |_| ms.to_string(),
        |ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string(),
    )
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A table with right-aligned numbers after the first column.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        println!("    {}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub(crate) fn status(report: &StatusReport, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(report);
    }
    if report.groups.is_empty() {
        println!("no share groups on this {} broker", report.broker);
    }
    for (i, g) in report.groups.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let state = if g.state.is_empty() {
            "-"
        } else {
            g.state.as_str()
        };
        println!("group {}  ({}, {} broker)", g.group, state, report.broker);
        println!(
            "  delivery count limit {}, lock duration {}, max record locks {}",
            g.delivery_count_limit,
            millis(g.lock_duration_ms),
            g.max_record_locks
        );
        println!("  members: {}", g.members.len());
        for m in &g.members {
            let assigned: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, p)| format!("{t}-{p}"))
                .collect();
            println!(
                "    {}  client {}  host {}  topics {}  assigned {}",
                m.member_id,
                if m.client_id.is_empty() {
                    "-"
                } else {
                    &m.client_id
                },
                if m.host.is_empty() { "-" } else { &m.host },
                m.topics.join(","),
                if assigned.is_empty() {
                    "-".to_owned()
                } else {
                    assigned.join(",")
                }
            );
        }
        if g.partitions.is_empty() {
            println!("  partitions: none read yet");
        } else {
            println!("  partitions:");
            let rows: Vec<Vec<String>> = g
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.topic.clone(),
                        p.partition.to_string(),
                        or_dash(p.start_offset),
                        p.lag.to_string(),
                        or_dash(p.in_flight),
                    ]
                })
                .collect();
            table(&["TOPIC", "PARTITION", "START", "LAG", "IN-FLIGHT"], &rows);
        }
        if !g.handlers.is_empty() {
            println!("  handlers:");
            let rows: Vec<Vec<String>> = g
                .handlers
                .iter()
                .map(|h| {
                    vec![
                        h.name.clone(),
                        h.topic.clone(),
                        h.concurrency.to_string(),
                        or_dash(h.in_flight),
                        h.dead_letter.clone().unwrap_or_else(|| "off".to_owned()),
                    ]
                })
                .collect();
            table(
                &[
                    "HANDLER",
                    "TOPIC",
                    "CONCURRENCY",
                    "IN-FLIGHT",
                    "DEAD LETTERS",
                ],
                &rows,
            );
        }
    }
    Ok(())
}

fn shown(p: &Option<Payload>) -> String {
    match p {
        None => "null".to_owned(),
        Some(p) => match std::str::from_utf8(p.bytes()) {
            Ok(s) => s.to_owned(),
            Err(_) => format!("<{} bytes, not UTF-8>", p.bytes().len()),
        },
    }
}

pub(crate) fn dead_letters(letters: &[DeadLetterRecord], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&letters);
    }
    for l in letters {
        let from = match (&l.original_topic, l.original_partition, l.original_offset) {
            (Some(t), Some(p), Some(o)) => format!("{t}-{p}@{o}"),
            (Some(t), _, _) => t.clone(),
            _ => "unknown (not written by shareworker)".to_owned(),
        };
        println!("{}  from {from}", l.id());
        println!(
            "  handler {}  group {}  attempts {}  at {}",
            or_dash(l.handler.as_deref()),
            or_dash(l.group.as_deref()),
            or_dash(l.attempts),
            l.dead_lettered_at_ms
                .map_or_else(|| time(l.timestamp_ms), time)
        );
        println!("  error: {}", or_dash(l.error.as_deref()));
        if let Some(k) = &l.key {
            println!("  key: {}", shown(&Some(k.clone())));
        }
        println!("  value: {}", shown(&l.value));
        if let Some(of) = &l.replay_of {
            println!("  a replay of {of} that failed again");
        }
        if let Some(to) = &l.replayed_to {
            println!("  replayed to {to}");
        }
        match l.discarded.as_deref() {
            Some("") => println!("  discarded"),
            Some(why) => println!("  discarded: {why}"),
            None => {}
        }
    }
    let replayed = letters.iter().filter(|l| l.replayed_to.is_some()).count();
    let discarded = letters.iter().filter(|l| l.discarded.is_some()).count();
    println!(
        "{} dead letter{}, {replayed} replayed{}",
        letters.len(),
        if letters.len() == 1 { "" } else { "s" },
        if discarded > 0 {
            format!(", {discarded} discarded")
        } else {
            String::new()
        }
    );
    Ok(())
}

pub(crate) fn discards(reports: &[DiscardReport], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&reports);
    }
    let mut discarded = 0;
    let mut skipped = 0;
    let mut dry_run = false;
    for r in reports {
        dry_run |= r.dry_run;
        for d in &r.discarded {
            if r.dry_run {
                println!("would discard {d}");
            } else {
                println!("discarded {d}");
            }
        }
        for s in &r.skipped {
            println!("skipped {}: {}", s.dead_letter, s.reason);
        }
        discarded += r.discarded.len();
        skipped += r.skipped.len();
    }
    if dry_run {
        println!("dry run: {discarded} would be discarded, {skipped} skipped; nothing was written");
    } else {
        println!("{discarded} discarded, {skipped} skipped");
    }
    Ok(())
}

pub(crate) fn replays(reports: &[ReplayReport], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&reports);
    }
    let mut replayed = 0;
    let mut skipped = 0;
    let mut dry_run = false;
    for r in reports {
        dry_run |= r.dry_run;
        for x in &r.replayed {
            match &x.to {
                Some(to) => println!("replayed {} -> {to}", x.dead_letter),
                None => println!("would replay {} -> {}", x.dead_letter, x.topic),
            }
        }
        for s in &r.skipped {
            println!("skipped {}: {}", s.dead_letter, s.reason);
        }
        replayed += r.replayed.len();
        skipped += r.skipped.len();
    }
    if dry_run {
        println!("dry run: {replayed} would be replayed, {skipped} skipped; nothing was written");
    } else {
        println!("{replayed} replayed, {skipped} skipped");
    }
    if skipped > 0 {
        println!("(--force replays dead letters that were replayed or discarded before too)");
    }
    Ok(())
}

pub(crate) fn group_configs(c: &GroupConfigs, changed: bool, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(c);
    }
    if changed {
        println!("updated share group {}", c.group);
    }
    println!("share group {}:", c.group);
    let width = c.configs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &c.configs {
        println!("  {k:<width$}  {v}");
    }
    Ok(())
}
