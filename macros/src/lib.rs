//! Procedural macros of [shareworker]: `#[job]` makes an `async fn` a job handler and
//! `#[main]` runs every handler of the binary. Use them through the `shareworker` crate, as
//! `#[shareworker::job]` and `#[shareworker::main]`: the code they generate names only
//! `::shareworker` paths.
//!
//! [shareworker]: https://docs.rs/shareworker

use proc_macro::TokenStream;

mod attr;
mod job;
mod main_fn;

#[doc = include_str!("docs/job.md")]
#[proc_macro_attribute]
pub fn job(attr: TokenStream, item: TokenStream) -> TokenStream {
    job::expand(attr.into(), item.into()).into()
}

#[doc = include_str!("docs/main.md")]
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    main_fn::expand(attr.into(), item.into()).into()
}
