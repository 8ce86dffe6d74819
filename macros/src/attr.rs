//! Parsing and checking of the arguments of `#[job(...)]` and `#[main]`.
//!
//! Everything a value can be checked for without the type checker is checked here, so a mistake
//! is reported at the literal that holds it rather than when the worker starts.

use std::time::Duration;

use proc_macro2::{Group, TokenStream};
use shareworker_core::retry::{BackoffProblem, check_backoff};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, ExprLit, ExprUnary, Lit, LitStr, Token, UnOp};

/// The keys `#[job(...)]` accepts, in the order the docs list them.
const JOB_KEYS: &str =
    "topic, group, concurrency, prefetch, max_attempts, backoff, timeout, dead_letter";

/// The keys `backoff(...)` accepts.
const BACKOFF_KEYS: &str = "initial, max, multiplier, jitter";

/// The arguments of `#[job(...)]`, checked; `None` where not written.
#[derive(Default)]
pub(crate) struct JobAttrs {
    pub(crate) topic: Option<LitStr>,
    pub(crate) group: Option<String>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) prefetch: Option<u32>,
    pub(crate) max_attempts: Option<u16>,
    pub(crate) backoff: Option<Backoff>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) dead_letter: Option<DeadLetter>,
}

/// `backoff(...)`; each part optional.
#[derive(Default)]
pub(crate) struct Backoff {
    pub(crate) initial: Option<Duration>,
    pub(crate) max: Option<Duration>,
    pub(crate) multiplier: Option<f64>,
    pub(crate) jitter: Option<f64>,
}

/// `dead_letter = ...`.
pub(crate) enum DeadLetter {
    /// `dead_letter = "topic"`.
    Topic(LitStr),
    /// `dead_letter = "off"` or `dead_letter = false`.
    Off,
}

impl JobAttrs {
    /// Parses `#[job(...)]`'s arguments. Mistakes in values, unknown and duplicate keys are all
    /// reported together; a syntax error stops at once.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Self> {
        let mut attrs = JobAttrs::default();
        let mut errors = Errors::default();
        let mut seen = Seen::default();
        let parser = syn::meta::parser(|meta| {
            let key = key_of(&meta);
            if !JOB_KEYS.split(", ").any(|k| k == key) {
                errors.push(meta.error(format_args!(
                    "unknown attribute `{key}`; expected one of: {JOB_KEYS}"
                )));
                return skip_value(&meta);
            }
            if !seen.first(&meta, &key, &mut errors)? {
                return Ok(());
            }
            match key.as_str() {
                "topic" => {
                    let lit = string(&meta, &key, "emails")?;
                    attrs.topic = errors.keep(non_empty(&key, lit));
                }
                "group" => {
                    let lit = string(&meta, &key, "emails-workers")?;
                    attrs.group = errors.keep(non_empty(&key, lit).map(|l| l.value()));
                }
                "concurrency" => {
                    attrs.concurrency = errors.keep(integer(&meta, &key, "8", 1, u32::MAX)?);
                }
                "prefetch" => {
                    attrs.prefetch = errors.keep(integer(&meta, &key, "16", 0, u32::MAX)?);
                }
                "max_attempts" => {
                    attrs.max_attempts = errors.keep(integer(&meta, &key, "5", 1, u16::MAX)?);
                }
                "timeout" => {
                    let lit = string(&meta, &key, "30s")?;
                    attrs.timeout = errors.keep(duration(&key, &lit, false));
                }
                "backoff" => attrs.backoff = Some(backoff(&meta, &mut errors)?),
                _ => attrs.dead_letter = errors.keep(dead_letter(&meta)?),
            }
            Ok(())
        });
        parser.parse2(tokens)?;
        errors.finish()?;
        attrs.check_together()?;
        Ok(attrs)
    }

    /// Checks that need several values.
    fn check_together(&self) -> syn::Result<()> {
        if let (Some(topic), Some(DeadLetter::Topic(dlq))) = (&self.topic, &self.dead_letter)
            && topic.value() == dlq.value()
        {
            return Err(syn::Error::new(
                dlq.span(),
                "the dead-letter topic must differ from the handler's own topic",
            ));
        }
        Ok(())
    }
}

/// Checks that `#[main]` got no arguments: each key is answered with an error.
pub(crate) fn parse_main_attrs(tokens: TokenStream) -> syn::Result<()> {
    let mut errors = Errors::default();
    let parser = syn::meta::parser(|meta| {
        let key = key_of(&meta);
        errors.push(meta.error(format_args!(
            "unknown attribute `{key}`: #[shareworker::main] takes no arguments; \
             configure the worker in `shareworker.toml` or `SHAREWORKER_*` variables"
        )));
        skip_value(&meta)
    });
    parser.parse2(tokens)?;
    errors.finish()
}

/// Several errors, reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// The value if `Ok`; records the error and gives `None` otherwise.
    pub(crate) fn keep<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        match self.0 {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }
}

/// The key as written, for messages (`a::b` for a path).
fn key_of(meta: &ParseNestedMeta<'_>) -> String {
    let segments: Vec<String> = meta
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segments.join("::")
}

/// The keys given so far, to report duplicates.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    /// Whether this is the first time `key` is given; a duplicate is recorded as an error at the
    /// key and its value skipped.
    fn first(
        &mut self,
        meta: &ParseNestedMeta<'_>,
        key: &str,
        errors: &mut Errors,
    ) -> syn::Result<bool> {
        if self.0.iter().any(|k| k == key) {
            errors.push(meta.error(format_args!("duplicate attribute `{key}`")));
            skip_value(meta)?;
            return Ok(false);
        }
        self.0.push(key.to_owned());
        Ok(true)
    }
}

/// Consumes whatever follows an unknown key: `= expr`, `(...)` or nothing.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.input.parse::<Group>()?;
    }
    Ok(())
}

/// The expression after `key =`, with a hint when the `=` is missing.
fn value_expr(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<Expr> {
    if !meta.input.peek(Token![=]) {
        return Err(meta.error(format_args!(
            "`{key}` needs a value, like `{key} = {example}`"
        )));
    }
    meta.value()?.parse()
}

/// A string literal after `key =`. A value of another kind is a syntax-level mistake: stop.
fn string(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<LitStr> {
    match value_expr(meta, key, &format!("\"{example}\""))? {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => Ok(lit),
        other => Err(syn::Error::new_spanned(
            other,
            format!("`{key}` takes a string literal, like `{key} = \"{example}\"`"),
        )),
    }
}

fn non_empty(key: &str, lit: LitStr) -> syn::Result<LitStr> {
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("{key} must not be empty"),
        ));
    }
    Ok(lit)
}

/// An integer literal after `key =`, within `min..=max`. The outer `Result` is a syntax error,
/// the inner one a bad value.
fn integer<N>(
    meta: &ParseNestedMeta<'_>,
    key: &str,
    example: &str,
    min: N,
    max: N,
) -> syn::Result<syn::Result<N>>
where
    N: Copy + Into<u64> + TryFrom<u64> + std::fmt::Display,
{
    let expr = value_expr(meta, key, example)?;
    let not_integer = |expr: &Expr| {
        syn::Error::new_spanned(
            expr,
            format!("`{key}` takes an integer, like `{key} = {example}`"),
        )
    };
    let (lit, negative) = match &expr {
        Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        }) => (lit, false),
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => match &**inner {
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => (lit, true),
            _ => return Err(not_integer(&expr)),
        },
        _ => return Err(not_integer(&expr)),
    };
    let out_of_range = |expr: &Expr, too_small: bool| {
        let message = if too_small {
            format!("{key} must be at least {min}")
        } else {
            format!("{key} must be at most {max}")
        };
        syn::Error::new_spanned(expr, message)
    };
    if negative {
        return Ok(Err(out_of_range(&expr, true)));
    }
    let Ok(value) = lit.base10_parse::<u64>() else {
        return Ok(Err(out_of_range(&expr, false)));
    };
    if value < min.into() {
        return Ok(Err(out_of_range(&expr, true)));
    }
    Ok(N::try_from(value)
        .ok()
        .filter(|v| (*v).into() <= max.into())
        .ok_or_else(|| out_of_range(&expr, false)))
}

/// A number literal after `key =`, integer or float, possibly negative.
fn number(meta: &ParseNestedMeta<'_>, key: &str, example: &str) -> syn::Result<(f64, Expr)> {
    let expr = value_expr(meta, key, example)?;
    let parse = |expr: &Expr| -> Option<f64> {
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Float(lit),
                ..
            }) => lit.base10_parse::<f64>().ok(),
            Expr::Lit(ExprLit {
                lit: Lit::Int(lit), ..
            }) => lit.base10_parse::<f64>().ok(),
            _ => None,
        }
    };
    let value = match &expr {
        Expr::Unary(ExprUnary {
            op: UnOp::Neg(_),
            expr: inner,
            ..
        }) => parse(inner).map(|v| -v),
        other => parse(other),
    };
    match value {
        Some(value) if value.is_finite() => Ok((value, expr)),
        _ => Err(syn::Error::new_spanned(
            &expr,
            format!("`{key}` takes a number, like `{key} = {example}`"),
        )),
    }
}

/// Parses a duration such as `"30s"` at compile time.
fn duration(key: &str, lit: &LitStr, zero_ok: bool) -> syn::Result<Duration> {
    let text = lit.value();
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.is_zero() && !zero_ok => Err(syn::Error::new(
            lit.span(),
            format!("{key} must be more than 0"),
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid duration `{text}`: {e}; write it like \"500ms\", \"30s\", \"5m\" or \"1h\""
            ),
        )),
    }
}

/// `backoff(initial = "1s", max = "1m", multiplier = 2.0, jitter = 0.1)`.
fn backoff(meta: &ParseNestedMeta<'_>, errors: &mut Errors) -> syn::Result<Backoff> {
    if !meta.input.peek(syn::token::Paren) {
        return Err(meta.error(
            "`backoff` takes a list, like \
             `backoff(initial = \"1s\", max = \"1m\", multiplier = 2.0, jitter = 0.1)`",
        ));
    }
    let mut backoff = Backoff::default();
    let mut seen = Seen::default();
    meta.parse_nested_meta(|inner| {
        let key = key_of(&inner);
        if !BACKOFF_KEYS.split(", ").any(|k| k == key) {
            errors.push(inner.error(format_args!(
                "unknown backoff setting `{key}`; expected one of: {BACKOFF_KEYS}"
            )));
            return skip_value(&inner);
        }
        if !seen.first(&inner, &key, errors)? {
            return Ok(());
        }
        match key.as_str() {
            "initial" => {
                let lit = string(&inner, &key, "1s")?;
                backoff.initial = errors.keep(duration("backoff initial", &lit, true));
            }
            "max" => {
                let lit = string(&inner, &key, "1m")?;
                backoff.max = errors.keep(duration("backoff max", &lit, true));
            }
            "multiplier" => {
                let (value, expr) = number(&inner, &key, "2.0")?;
                broken(errors, &expr, check_backoff(None, None, Some(value), None));
                backoff.multiplier = Some(value);
            }
            _ => {
                let (value, expr) = number(&inner, &key, "0.1")?;
                broken(errors, &expr, check_backoff(None, None, None, Some(value)));
                backoff.jitter = Some(value);
            }
        }
        Ok(())
    })?;
    broken(
        errors,
        &meta.path,
        check_backoff(backoff.initial, backoff.max, None, None),
    );
    Ok(backoff)
}

/// Reports the backoff rules `problems` breaks (checked by `shareworker-core`, like the
/// configuration's backoff) at `at`.
fn broken(errors: &mut Errors, at: &impl quote::ToTokens, problems: Vec<BackoffProblem>) {
    for p in problems {
        errors.push(syn::Error::new_spanned(
            at,
            format!("backoff `{}` {}", p.part, p.message),
        ));
    }
}

/// `dead_letter = "topic"`, `"off"` or `false`. Outer `Result`: syntax; inner: value.
fn dead_letter(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Result<DeadLetter>> {
    let key = "dead_letter";
    let expr = value_expr(meta, key, "\"emails.dlq\"")?;
    Ok(match expr {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.value().as_str() {
            // The same words the configuration file takes for "off".
            "off" | "none" | "false" => Ok(DeadLetter::Off),
            "" => Err(syn::Error::new(
                lit.span(),
                "`dead_letter` must not be empty; write a topic, or `dead_letter = \"off\"`",
            )),
            _ => Ok(DeadLetter::Topic(lit)),
        },
        Expr::Lit(ExprLit {
            lit: Lit::Bool(lit),
            ..
        }) => {
            if lit.value {
                Err(syn::Error::new(
                    lit.span,
                    "`dead_letter = true` is the default (the topic `<topic>.dlq`); \
                     leave it out, or write a topic, or `dead_letter = false`",
                ))
            } else {
                Ok(DeadLetter::Off)
            }
        }
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "`dead_letter` takes a topic (`dead_letter = \"emails.dlq\"`) \
                 or `\"off\"` / `false`",
            ));
        }
    })
}

/// The item as written, followed by the errors: the item still compiles as far as it can, so
/// the IDE keeps seeing it.
pub(crate) fn with_error(item: TokenStream, error: &syn::Error) -> TokenStream {
    let error = error.to_compile_error();
    quote::quote! {
        #item
        #error
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn parse(tokens: TokenStream) -> Result<JobAttrs, String> {
        JobAttrs::parse(tokens).map_err(|e| e.to_string())
    }

    #[test]
    fn every_attribute_is_read() -> Result<(), String> {
        let attrs = parse(quote! {
            topic = "emails", group = "mailers", concurrency = 8, prefetch = 0,
            max_attempts = 5, timeout = "1m 30s", dead_letter = "emails.failed",
            backoff(initial = "250ms", max = "2h", multiplier = 3, jitter = 0),
        })?;
        assert_eq!(attrs.topic.map(|t| t.value()).as_deref(), Some("emails"));
        assert_eq!(attrs.group.as_deref(), Some("mailers"));
        assert_eq!(attrs.concurrency, Some(8));
        assert_eq!(attrs.prefetch, Some(0));
        assert_eq!(attrs.max_attempts, Some(5));
        assert_eq!(attrs.timeout, Some(Duration::from_secs(90)));
        assert!(
            matches!(&attrs.dead_letter, Some(DeadLetter::Topic(t)) if t.value() == "emails.failed")
        );
        let backoff = attrs.backoff.ok_or("no backoff")?;
        assert_eq!(backoff.initial, Some(Duration::from_millis(250)));
        assert_eq!(backoff.max, Some(Duration::from_secs(7200)));
        assert_eq!(backoff.multiplier, Some(3.0));
        assert_eq!(backoff.jitter, Some(0.0));
        Ok(())
    }

    #[test]
    fn unwritten_attributes_stay_unset() -> Result<(), String> {
        let attrs = parse(quote!(topic = "emails", backoff(max = "5m")))?;
        assert!(attrs.group.is_none() && attrs.concurrency.is_none() && attrs.timeout.is_none());
        assert!(attrs.dead_letter.is_none());
        let backoff = attrs.backoff.ok_or("no backoff")?;
        assert!(backoff.initial.is_none() && backoff.multiplier.is_none());
        assert_eq!(backoff.max, Some(Duration::from_secs(300)));
        Ok(())
    }

    #[test]
    fn dead_letter_can_be_turned_off() -> Result<(), String> {
        for value in [quote!(false), quote!("off"), quote!("none")] {
            let attrs = parse(quote!(topic = "t", dead_letter = #value))?;
            assert!(matches!(attrs.dead_letter, Some(DeadLetter::Off)));
        }
        Ok(())
    }

    #[test]
    fn mistakes_are_all_reported() {
        let message = |tokens| parse(tokens).err().unwrap_or_default();
        assert_eq!(
            message(quote!(topic = "t", concurrency = 0)),
            "concurrency must be at least 1"
        );
        assert_eq!(
            message(quote!(topic = "t", max_attempts = 0)),
            "max_attempts must be at least 1"
        );
        assert_eq!(
            message(quote!(topic = "t", topic = "u")),
            "duplicate attribute `topic`"
        );
        assert!(
            message(quote!(topic = "t", timeout = "soon")).starts_with("invalid duration `soon`")
        );
        assert_eq!(
            message(quote!(topic = "t", dead_letter = "t")),
            "the dead-letter topic must differ from the handler's own topic"
        );
        let errors = JobAttrs::parse(quote!(retries = 1, concurrency = 0, jitter = 2))
            .err()
            .map(|e| e.into_iter().count());
        assert_eq!(errors, Some(3));
    }

    #[test]
    fn main_takes_no_arguments() {
        assert!(parse_main_attrs(TokenStream::new()).is_ok());
        assert!(parse_main_attrs(quote!(flavor = "current_thread")).is_err());
    }
}
