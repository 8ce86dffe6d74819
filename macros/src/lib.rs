//! Procedural macros of shareworker; use them through the `shareworker` crate.
use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_attribute]
pub fn job(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder.
#[proc_macro_attribute]
pub fn main(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
