//! `#[main]`: turns `async fn main()` into a `main` that runs the setup, then the worker.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType, Type};

use crate::attr::{Errors, parse_main_attrs, with_error};

const RETURN_TYPE: &str =
    "#[shareworker::main] functions return `()` or `Result<(), E>` where E: Display";

/// Expands `#[main(attr)] item`; on a mistake, the item unchanged plus `compile_error!`s.
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
            "#[shareworker::main] goes on `async fn main()`",
        )
    })?;
    let mut errors = Errors::default();
    errors.keep(parse_main_attrs(attr));
    let sig = &func.sig;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "#[shareworker::main] functions must be `async fn`",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(variadic, ARGUMENTS));
    } else if sig.inputs.len() > 1 || sig.inputs.first().is_some_and(|a| !is_mut_ref(a)) {
        errors.push(syn::Error::new_spanned(&sig.inputs, ARGUMENTS));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[shareworker::main] functions cannot be generic",
        ));
    }
    if let ReturnType::Type(_, ty) = &sig.output
        && !returns_unit_or_result(ty)
    {
        errors.push(syn::Error::new_spanned(ty, RETURN_TYPE));
    }
    errors.finish()?;
    Ok(generate(&func))
}

const ARGUMENTS: &str = "#[shareworker::main] functions take no arguments, or one: \
     `app: &mut shareworker::App`";

/// `name: &mut T`.
fn is_mut_ref(arg: &FnArg) -> bool {
    matches!(arg, FnArg::Typed(t) if matches!(&*t.ty, Type::Reference(r) if r.mutability.is_some()))
}

/// `()` or a path ending in `Result`; the type checker does the rest (`E: Display`).
fn returns_unit_or_result(ty: &Type) -> bool {
    match ty {
        Type::Group(group) => returns_unit_or_result(&group.elem),
        Type::Paren(paren) => returns_unit_or_result(&paren.elem),
        Type::Tuple(tuple) => tuple.elems.is_empty(),
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Result"),
        _ => false,
    }
}

/// The user's function becomes the setup, nested in a plain `fn` of the same name that hands it
/// to the runtime. Nesting keeps `return`, `?` and the declared return type working as written.
fn generate(func: &ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let ident = &sig.ident;
    let output = &sig.output;
    // A return type that is not `()` or `Result<(), E: Display>` is reported at the type.
    let span = match output {
        ReturnType::Type(_, ty) => error_type(ty).span(),
        ReturnType::Default => Span::call_site(),
    };
    let inputs = &sig.inputs;
    let run_main = if inputs.is_empty() {
        quote_spanned!(span=> ::shareworker::__private::run_main(__shareworker_setup()))
    } else {
        quote_spanned!(span=> ::shareworker::__private::run_app(
            |app| ::std::boxed::Box::pin(__shareworker_setup(app))
        ))
    };
    quote! {
        #(#attrs)*
        #vis fn #ident() -> ::std::process::ExitCode {
            async fn __shareworker_setup(#inputs) #output #block
            #run_main
        }
    }
}

/// `E` in `Result<(), E>`, where a wrong error type is best reported; else the whole type.
fn error_type(ty: &Type) -> &Type {
    if let Type::Path(path) = ty
        && let Some(last) = path.path.segments.last()
        && let syn::PathArguments::AngleBracketed(args) = &last.arguments
        && let (2, Some(syn::GenericArgument::Type(error))) = (args.args.len(), args.args.last())
    {
        return error;
    }
    ty
}
