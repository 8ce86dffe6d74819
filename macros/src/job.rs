//! `#[job]`: checks a handler's signature, then adds its definition and registration.

use std::time::Duration;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens as _, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, GenericArgument, Ident, ItemFn, LitStr, PathArguments, ReturnType, Type};

use crate::attr::{Backoff, DeadLetter, Errors, JobAttrs, with_error};

const RETURN_TYPE: &str =
    "#[job] handlers return `Result<(), E>` where E: Into<shareworker::JobError>";

/// Expands `#[job(attr)] item`; on a mistake, the item unchanged plus `compile_error!`s.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    match try_expand(attr, item.clone()) {
        Ok(tokens) => tokens,
        Err(error) => with_error(item, &error),
    }
}

fn try_expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let func: ItemFn = syn::parse2(item).map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            "#[job] goes on an `async fn` handler, like \
             `async fn send_email(job: Job<Email>) -> Result<(), JobError>`",
        )
    })?;
    let mut errors = Errors::default();
    let attrs = errors.keep(JobAttrs::parse(attr.clone()));
    let handler = errors.keep(Handler::check(&func));
    let topic = attrs.as_ref().and_then(|attrs| {
        if attrs.topic.is_none() {
            // Point at the arguments when there are some, else at the attribute itself.
            let error = if attr.is_empty() {
                syn::Error::new(Span::call_site(), MISSING_TOPIC)
            } else {
                syn::Error::new_spanned(&attr, MISSING_TOPIC)
            };
            errors.push(error);
        }
        attrs.topic.as_ref()
    });
    errors.finish()?;
    match (attrs.as_ref(), topic, handler) {
        (Some(attrs), Some(topic), Some(handler)) => Ok(generate(&func, attrs, topic, &handler)),
        // Every `None` above recorded an error, so `finish` returned it.
        _ => Err(syn::Error::new(Span::call_site(), "invalid #[job]")),
    }
}

const MISSING_TOPIC: &str = "missing `topic`: write #[job(topic = \"...\")]";

/// What the signature says, once checked.
struct Handler<'a> {
    /// `T` in `Job<T>`.
    payload: &'a Type,
    /// The types of the arguments after the job (`State<_>`).
    states: Vec<&'a Type>,
    /// `E` in `Result<(), E>`; `None` for an alias such as `anyhow::Result<()>`.
    error: Option<&'a Type>,
}

impl<'a> Handler<'a> {
    /// Checks `async fn NAME(job: Job<T>) -> Result<(), E>`, reporting every mistake at once.
    fn check(func: &'a ItemFn) -> syn::Result<Self> {
        let sig = &func.sig;
        let mut errors = Errors::default();
        if sig.asyncness.is_none() {
            errors.push(syn::Error::new(
                sig.fn_token.span,
                "#[job] handlers must be `async fn`",
            ));
        }
        if let Some(unsafety) = &sig.unsafety {
            errors.push(syn::Error::new(
                unsafety.span,
                "#[job] handlers cannot be `unsafe`",
            ));
        }
        if let Some(abi) = &sig.abi {
            errors.push(syn::Error::new_spanned(
                abi,
                "#[job] handlers cannot be `extern`",
            ));
        }
        if !sig.generics.params.is_empty() {
            errors.push(syn::Error::new_spanned(
                &sig.generics,
                "#[job] handlers cannot be generic: the worker decodes one payload type",
            ));
        } else if let Some(where_clause) = &sig.generics.where_clause {
            errors.push(syn::Error::new_spanned(
                where_clause,
                "#[job] handlers cannot have a `where` clause",
            ));
        }
        let arguments = errors.keep(arguments_of(sig));
        let error = errors.keep(error_of(&sig.output, &sig.ident));
        errors.finish()?;
        match (arguments, error) {
            (Some((payload, states)), Some(error)) => Ok(Handler {
                payload,
                states,
                error,
            }),
            // Every `None` above recorded an error, so `finish` returned it.
            _ => Err(syn::Error::new(sig.ident.span(), "invalid #[job] handler")),
        }
    }
}

/// The most `State` arguments a handler takes.
const MAX_STATES: usize = 8;

/// `T` of the first argument `job: Job<T>`, and the types of the arguments after it.
fn arguments_of(sig: &syn::Signature) -> syn::Result<(&Type, Vec<&Type>)> {
    if let Some(variadic) = &sig.variadic {
        return Err(syn::Error::new_spanned(
            variadic,
            "#[job] handlers take one argument, the job: `job: Job<T>`",
        ));
    }
    let mut inputs = sig.inputs.iter();
    let Some(first) = inputs.next() else {
        return Err(syn::Error::new(
            sig.paren_token.span.join(),
            "#[job] handlers take one argument, the job: `job: Job<T>`",
        ));
    };
    let arg = match first {
        FnArg::Receiver(receiver) => {
            return Err(syn::Error::new_spanned(
                receiver,
                "#[job] handlers are free functions: they cannot take `self`",
            ));
        }
        FnArg::Typed(arg) => arg,
    };
    let rest: Vec<&FnArg> = inputs.collect();
    if rest.len() > MAX_STATES {
        return Err(syn::Error::new_spanned(
            quote!(#(#rest),*),
            format!(
                "#[job] handlers take at most {MAX_STATES} `State` arguments after the job; \
                 group states in a struct of your own"
            ),
        ));
    }
    let states = rest
        .iter()
        .map(|arg| match arg {
            FnArg::Typed(arg) => Ok(&*arg.ty),
            FnArg::Receiver(receiver) => Err(syn::Error::new_spanned(
                receiver,
                "#[job] handlers are free functions: they cannot take `self`",
            )),
        })
        .collect::<syn::Result<Vec<&Type>>>()?;
    let payload = job_payload(&arg.ty).ok_or_else(|| {
        syn::Error::new_spanned(
            &arg.ty,
            "the handler's argument must be `shareworker::Job<T>`, where T is the payload \
             type (`Job<Bytes>` for the raw bytes)",
        )
    })?;
    if let Type::ImplTrait(_) = ungroup(payload) {
        return Err(syn::Error::new_spanned(
            payload,
            "#[job] handlers cannot be generic: the worker decodes one payload type",
        ));
    }
    Ok((payload, states))
}

/// `T` if `ty` is `Job<T>` (any path ending in `Job`).
fn job_payload(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Job" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(payload)) if args.args.len() == 1 => Some(payload),
        _ => None,
    }
}

/// `E` of `-> Result<(), E>`; `Ok(None)` for `-> Result<()>` (an alias that fixes `E`).
fn error_of<'a>(output: &'a ReturnType, name: &Ident) -> syn::Result<Option<&'a Type>> {
    let ty = match output {
        ReturnType::Default => return Err(syn::Error::new(name.span(), RETURN_TYPE)),
        ReturnType::Type(_, ty) => ty,
    };
    let wrong = || syn::Error::new_spanned(ty, RETURN_TYPE);
    let Type::Path(path) = ungroup(ty) else {
        return Err(wrong());
    };
    let Some(last) = path.path.segments.last() else {
        return Err(wrong());
    };
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return Err(wrong());
    };
    if last.ident != "Result" || path.qself.is_some() {
        return Err(wrong());
    }
    let mut types = args.args.iter().map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let ok = types.next().flatten();
    if !ok.is_some_and(|ok| matches!(ungroup(ok), Type::Tuple(t) if t.elems.is_empty())) {
        return Err(match ok {
            Some(ok) => syn::Error::new_spanned(ok, RETURN_TYPE),
            None => wrong(),
        });
    }
    match (types.next(), types.next()) {
        (None, _) => Ok(None),
        (Some(Some(error)), None) => Ok(Some(error)),
        _ => Err(wrong()),
    }
}

/// The type inside invisible groups (from `macro_rules!`) and parentheses.
fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// The function unchanged, then its definition struct, its registration and the type checks.
fn generate(func: &ItemFn, attrs: &JobAttrs, topic: &LitStr, handler: &Handler<'_>) -> TokenStream {
    let ident = &func.sig.ident;
    let name = ident.unraw().to_string();
    let vis = &func.vis;
    // Whatever `#[cfg]` hides the function hides what goes with it.
    let cfgs: Vec<_> = func
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("cfg"))
        .collect();
    let struct_doc =
        format!("The job definition of [`fn@{ident}`], made by `#[shareworker::job]`.");
    let settings = settings(attrs);
    let checks = checks(ident, handler);
    let payload = handler.payload;
    // `_` where the macro has no type: the future, and `E` behind an alias such as
    // `anyhow::Result<()>`.
    let future = quote_spanned!(ident.span()=> _);
    let error = match handler.error {
        Some(error) => quote!(#error),
        None => quote_spanned!(ident.span()=> _),
    };
    let make = if handler.states.is_empty() {
        quote!(::shareworker::JobDefinition::new::<_, #payload, #future, #error>)
    } else {
        let states = &handler.states;
        quote!(::shareworker::JobDefinition::handler::<
            _,
            (::shareworker::Job<#payload>, #(#states,)*),
        >)
    };
    quote! {
        #func

        #(#cfgs)*
        #[allow(non_camel_case_types, dead_code)]
        #[doc = #struct_doc]
        #vis struct #ident {}

        #(#cfgs)*
        impl #ident {
            /// The handler's definition: its name, topic and the settings written in
            /// `#[job(...)]`. The worker finds it by itself; call this to inspect it or to run
            /// the handler elsewhere.
            #[must_use]
            #vis fn definition() -> ::shareworker::JobDefinition {
                #checks
                #make(#name, #topic, #ident)
                    #settings
            }
        }

        #(#cfgs)*
        ::shareworker::__private::inventory::submit! {
            ::shareworker::__private::Registration {
                name: #name,
                definition: #ident::definition,
            }
        }
    }
}

/// The settings written in the attribute, as calls of [`JobDefinition`]'s public builder methods
/// (`.group(..)`, `.concurrency(..)`, ...): the macro writes what a user could write by hand.
/// A `backoff(...)` that names some of its parts passes the defaults for the others: the
/// configuration file and the environment still override each part on its own.
fn settings(attrs: &JobAttrs) -> TokenStream {
    let mut calls = TokenStream::new();
    if let Some(group) = &attrs.group {
        calls.extend(quote!(.group(#group)));
    }
    if let Some(n) = attrs.concurrency {
        let n = Literal::u32_unsuffixed(n);
        calls.extend(quote!(.concurrency(#n)));
    }
    if let Some(n) = attrs.prefetch {
        let n = Literal::u32_unsuffixed(n);
        calls.extend(quote!(.prefetch(#n)));
    }
    if let Some(n) = attrs.max_attempts {
        let n = Literal::u16_unsuffixed(n);
        calls.extend(quote!(.max_attempts(#n)));
    }
    if let Some(Backoff {
        initial,
        max,
        multiplier,
        jitter,
    }) = &attrs.backoff
    {
        let default = |part: &str| {
            let part = Ident::new(part, Span::call_site());
            quote!(::shareworker::config::BackoffConfig::default().#part)
        };
        let initial = initial.map_or_else(|| default("initial"), duration);
        let max = max.map_or_else(|| default("max"), duration);
        let multiplier = multiplier.map_or_else(|| default("multiplier"), float);
        let jitter = jitter.map_or_else(|| default("jitter"), float);
        calls.extend(quote!(.backoff(#initial, #max, #multiplier, #jitter)));
    }
    if let Some(d) = attrs.timeout {
        let d = duration(d);
        calls.extend(quote!(.timeout(#d)));
    }
    match &attrs.dead_letter {
        Some(DeadLetter::Topic(topic)) => calls.extend(quote!(.dead_letter(#topic))),
        Some(DeadLetter::Off) => calls.extend(quote!(.no_dead_letter())),
        None => {}
    }
    calls
}

/// A `Duration` constant, in the largest exact unit.
fn duration(d: Duration) -> TokenStream {
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        let secs = Literal::u64_unsuffixed(d.as_secs());
        quote!(::core::time::Duration::from_secs(#secs))
    } else if nanos.is_multiple_of(1_000_000) {
        match u64::try_from(d.as_millis()) {
            Ok(millis) => {
                let millis = Literal::u64_unsuffixed(millis);
                quote!(::core::time::Duration::from_millis(#millis))
            }
            Err(_) => exact(d),
        }
    } else {
        exact(d)
    }
}

fn exact(d: Duration) -> TokenStream {
    let secs = Literal::u64_unsuffixed(d.as_secs());
    let nanos = Literal::u32_unsuffixed(d.subsec_nanos());
    quote!(::core::time::Duration::new(#secs, #nanos))
}

fn float(x: f64) -> TokenStream {
    Literal::f64_unsuffixed(x).into_token_stream()
}

/// Type checks reported at the user's tokens: `T` can be decoded, `E` converts into `JobError`,
/// the handler's future is `Send`. They sit in the same body as the call to
/// `JobDefinition::new` (or `::handler`), whose bounds are the same: the compiler then reports
/// each failure once, here.
fn checks(ident: &Ident, handler: &Handler<'_>) -> TokenStream {
    let payload = handler.payload;
    let payload_check = quote_spanned! {payload.span()=>
        ::shareworker::__private::assert_payload::<#payload>();
    };
    let error_check = handler.error.map(|error| {
        quote_spanned! {error.span()=>
            ::shareworker::__private::assert_error::<#error>();
        }
    });
    let state_checks = handler.states.iter().map(|ty| {
        quote_spanned! {ty.span()=>
            ::shareworker::__private::assert_state_arg::<#ty>();
        }
    });
    // A closure nothing calls: it names the handler's future without running it.
    let arguments = (0..=handler.states.len()).map(|_| quote!(loop {}));
    let send_check = quote_spanned! {ident.span()=>
        #[allow(unreachable_code, clippy::diverging_sub_expression, clippy::empty_loop)]
        let _ = || ::shareworker::__private::assert_send(&#ident(#(#arguments),*));
    };
    quote! {
        #payload_check
        #error_check
        #(#state_checks)*
        #send_check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        let text = |d| duration(d).to_string().replace(' ', "");
        assert_eq!(
            text(Duration::from_secs(30)),
            "::core::time::Duration::from_secs(30)"
        );
        assert_eq!(
            text(Duration::from_millis(1500)),
            "::core::time::Duration::from_millis(1500)"
        );
        assert_eq!(
            text(Duration::from_nanos(1_500)),
            "::core::time::Duration::new(0,1500)"
        );
    }

    #[test]
    fn signatures_are_read() {
        let func: ItemFn = syn::parse_quote! {
            async fn f(job: shareworker::Job<Vec<u8>>) -> Result<(), std::io::Error> { Ok(()) }
        };
        let handler = Handler::check(&func);
        assert!(handler.is_ok_and(|h| h.error.is_some()));
        let func: ItemFn = syn::parse_quote! {
            async fn f(_: Job<String>) -> anyhow::Result<()> { Ok(()) }
        };
        let handler = Handler::check(&func);
        assert!(handler.is_ok_and(|h| h.error.is_none()));
        let func: ItemFn = syn::parse_quote! {
            async fn f(_: Job<String>, State(db): State<Db>, s: State<u8>) -> Result<(), E> { Ok(()) }
        };
        let handler = Handler::check(&func);
        assert!(handler.is_ok_and(|h| h.states.len() == 2));
        let func: ItemFn = syn::parse_quote! {
            fn f(_: Job<String>, n: u32) -> Result<u32, E> { Ok(n) }
        };
        // Not async, and not `Result<(), E>`: the extra argument is the type checker's to judge.
        let errors = Handler::check(&func).err().map(|e| e.into_iter().count());
        assert_eq!(errors, Some(2));
    }
}
